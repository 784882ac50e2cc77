using System.Net;
using FsCheck;
using FsCheck.Fluent;
using NatKit.Stun.Transactions;

namespace NatKit.Stun.Tests;

public class StunTransactionTableTests
{
    private static readonly IPEndPoint Server = new(IPAddress.Parse("192.0.2.1"), 3478);

    private static TimeSpan Ms(double ms) => TimeSpan.FromMilliseconds(ms);

    private static byte[] Request(StunTransactionId id)
    {
        var buffer = new byte[64];
        var w = new StunMessageWriter(buffer, StunMethods.Binding, StunClass.Request, id);
        w.AddFingerprint();
        return buffer.AsSpan(0, w.Length).ToArray();
    }

    private static byte[] Response(StunTransactionId id, StunClass cls = StunClass.SuccessResponse)
    {
        var buffer = new byte[64];
        var w = new StunMessageWriter(buffer, StunMethods.Binding, cls, id);
        w.AddFingerprint();
        return buffer.AsSpan(0, w.Length).ToArray();
    }

    [Fact]
    public void Rfc8489_S6_2_1_Poll_ResendsAtDoublingRto_ThenTimesOutAfterRmRto()
    {
        var table = new StunTransactionTable();
        var id = StunTransactionId.NewRandom();
        var request = Request(id);
        Assert.True(table.TryAdd(id, request, Server, TimeSpan.Zero, StunRetransmitPolicy.Default, "owner"));

        var due = new List<StunTransactionDue>();
        var resentAt = new List<double>();
        for (var t = 0; t <= 39_500; t++)
        {
            if (table.NextDeadline > Ms(t))
            {
                continue;
            }

            table.Poll(Ms(t), due);
            foreach (var d in due)
            {
                if (d.Kind == StunTransactionDueKind.Retransmit)
                {
                    Assert.Equal(request, d.Request.ToArray());
                    Assert.Equal(Server, d.Destination);
                    Assert.Equal("owner", d.Owner);
                    resentAt.Add(t);
                }
                else
                {
                    Assert.Equal(39_500, t);
                    Assert.Equal(id, d.Id);
                }
            }

            due.Clear();
        }

        // The first send is the caller's at 0; six more follow, then Rm = 16 RTOs of waiting (RFC 8489 6.2.1).
        Assert.Equal(new double[] { 500, 1500, 3500, 7500, 15500, 31500 }, resentAt);
        Assert.Equal(0, table.Count);
        Assert.Equal(TimeSpan.MaxValue, table.NextDeadline);
    }

    [Fact]
    public void Reliable_SendsOnce_AndTimesOutAfterTi()
    {
        var table = new StunTransactionTable();
        var id = StunTransactionId.NewRandom();
        table.TryAdd(id, Request(id), Server, Ms(100), StunRetransmitPolicy.Reliable(TimeSpan.FromSeconds(39.5)));
        Assert.Equal(Ms(39_600), table.NextDeadline);
        var due = new List<StunTransactionDue>();
        table.Poll(Ms(39_599), due);
        Assert.Empty(due);
        table.Poll(Ms(39_600), due);
        Assert.Equal(StunTransactionDueKind.TimedOut, Assert.Single(due).Kind);
    }

    [Fact]
    public void LatePoll_ResendsOnce_AndCountsTheNextWaitFromNow()
    {
        var table = new StunTransactionTable();
        var id = StunTransactionId.NewRandom();
        table.TryAdd(id, Request(id), Server, TimeSpan.Zero, StunRetransmitPolicy.Default);
        var due = new List<StunTransactionDue>();
        table.Poll(Ms(2_000), due); // the 500 ms and 1500 ms deadlines both passed
        Assert.Equal(StunTransactionDueKind.Retransmit, Assert.Single(due).Kind);
        Assert.Equal(Ms(3_000), table.NextDeadline); // second wait (1 s) from now
    }

    [Theory]
    [InlineData(StunClass.SuccessResponse)]
    [InlineData(StunClass.ErrorResponse)]
    public void TryMatch_AResponseEndsItsTransaction_WithElapsedAndSends(StunClass cls)
    {
        var table = new StunTransactionTable();
        var id = StunTransactionId.NewRandom();
        var other = StunTransactionId.NewRandom();
        table.TryAdd(id, Request(id), Server, Ms(10), StunRetransmitPolicy.Default, 7);
        table.TryAdd(other, Request(other), Server, Ms(10), StunRetransmitPolicy.Default, 8);
        var due = new List<StunTransactionDue>();
        table.Poll(Ms(510), due);
        Assert.Equal(2, due.Count);

        Assert.True(table.TryMatch(Response(id, cls), Ms(600), out var match));
        Assert.Equal(id, match.Id);
        Assert.Equal(7, match.Owner);
        Assert.Equal(Server, match.Destination);
        Assert.Equal(Ms(590), match.Elapsed);
        Assert.Equal(2, match.Transmissions);
        Assert.False(table.Contains(id));
        Assert.True(table.Contains(other));
        Assert.False(table.TryMatch(Response(id, cls), Ms(600), out _)); // a duplicate response matches nothing

        // The matched transaction never comes back from Poll: only the other one does.
        due.Clear();
        table.Poll(TimeSpan.FromMinutes(5), due);
        Assert.All(due, d => Assert.Equal(other, d.Id));
    }

    [Fact]
    public void TryMatch_IgnoresRequestsIndicationsAndMalformedHeaders()
    {
        var table = new StunTransactionTable();
        var id = StunTransactionId.NewRandom();
        table.TryAdd(id, Request(id), Server, TimeSpan.Zero, StunRetransmitPolicy.Default);

        Assert.False(table.TryMatch(Request(id), Ms(1), out _)); // our own request reflected back
        var indication = Response(id, StunClass.Indication);
        Assert.False(table.TryMatch(indication, Ms(1), out _));
        var response = Response(id);
        Assert.False(table.TryMatch(response.AsSpan(0, response.Length - 4), Ms(1), out _)); // length disagrees
        var padded = response.Concat(new byte[4]).ToArray();
        Assert.False(table.TryMatch(padded, Ms(1), out _));
        var noCookie = response.ToArray();
        noCookie[4] ^= 1;
        Assert.False(table.TryMatch(noCookie, Ms(1), out _));
        Assert.True(table.Contains(id));
        Assert.True(table.TryMatch(response, Ms(1), out _));
    }

    [Fact]
    public void TryPeek_LeavesTheTransactionPending_UntilRemoved()
    {
        var table = new StunTransactionTable();
        var id = StunTransactionId.NewRandom();
        table.TryAdd(id, Request(id), Server, TimeSpan.Zero, StunRetransmitPolicy.Default, "o");
        Assert.True(table.TryPeek(Response(id), Ms(5), out var peeked));
        Assert.Equal("o", peeked.Owner);
        Assert.True(table.Contains(id));
        Assert.True(table.TryRemove(id, out var owner));
        Assert.Equal("o", owner);
        Assert.False(table.TryRemove(id, out _));
        Assert.Equal(TimeSpan.MaxValue, table.NextDeadline);
    }

    [Fact]
    public void TryAdd_RefusesADuplicateId_AndAFullTable()
    {
        var table = new StunTransactionTable(capacity: 2);
        var a = StunTransactionId.NewRandom();
        var b = StunTransactionId.NewRandom();
        var c = StunTransactionId.NewRandom();
        Assert.True(table.TryAdd(a, Request(a), Server, TimeSpan.Zero, StunRetransmitPolicy.Default));
        Assert.False(table.TryAdd(a, Request(a), Server, TimeSpan.Zero, StunRetransmitPolicy.Default));
        Assert.True(table.TryAdd(b, Request(b), Server, TimeSpan.Zero, StunRetransmitPolicy.Default));
        Assert.False(table.TryAdd(c, Request(c), Server, TimeSpan.Zero, StunRetransmitPolicy.Default));
        Assert.True(table.TryRemove(a, out _));
        Assert.True(table.TryAdd(c, Request(c), Server, TimeSpan.Zero, StunRetransmitPolicy.Default));
        Assert.Equal(2, table.Count);
    }

    [Fact]
    public void Clear_EndsEverything_AsTimedOut()
    {
        var table = new StunTransactionTable();
        var ids = Enumerable.Range(0, 5).Select(_ => StunTransactionId.NewRandom()).ToList();
        foreach (var id in ids)
        {
            table.TryAdd(id, Request(id), Server, TimeSpan.Zero, StunRetransmitPolicy.Default);
        }

        var removed = new List<StunTransactionDue>();
        table.Clear(removed);
        Assert.Equal(ids.ToHashSet(), removed.Select(r => r.Id).ToHashSet());
        Assert.All(removed, r => Assert.Equal(StunTransactionDueKind.TimedOut, r.Kind));
        Assert.Equal(0, table.Count);
        Assert.Equal(TimeSpan.MaxValue, table.NextDeadline);
    }

    [Fact]
    public void ManyQuickResponses_KeepTheDeadlineQueueBounded_AndLiveTransactionsOnSchedule()
    {
        var table = new StunTransactionTable(capacity: 16);
        var slow = StunTransactionId.NewRandom();
        table.TryAdd(slow, Request(slow), Server, TimeSpan.Zero, StunRetransmitPolicy.Default);
        for (var i = 0; i < 10_000; i++)
        {
            var id = StunTransactionId.NewRandom();
            Assert.True(table.TryAdd(id, Request(id), Server, Ms(1), StunRetransmitPolicy.Default));
            Assert.True(table.TryMatch(Response(id), Ms(1), out _));
        }

        Assert.Equal(1, table.Count);
        Assert.Equal(Ms(500), table.NextDeadline);
        var due = new List<StunTransactionDue>();
        table.Poll(Ms(500), due);
        Assert.Equal(slow, Assert.Single(due).Id);
    }

    [Fact]
    public void Policy_Rejects_NonsenseValues_NamingTheField()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => StunRetransmitPolicy.Udp(TimeSpan.Zero));
        Assert.Contains("InitialRto", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ArgumentOutOfRangeException>(() => StunRetransmitPolicy.Udp(Ms(500), requestCount: 0));
        Assert.Contains("RequestCount", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            new StunTransactionTable().TryAdd(StunTransactionId.NewRandom(), Array.Empty<byte>(), Server, TimeSpan.Zero, default));
        Assert.Equal(TimeSpan.FromMilliseconds(39_500), StunRetransmitPolicy.Default.Total);
    }

    [Fact]
    public void Property_RandomAndMutatedBytes_NeverThrow_AndOnlyTheirOwnIdMatches()
    {
        var table = new StunTransactionTable();
        var id = StunTransactionId.NewRandom();
        table.TryAdd(id, Request(id), Server, TimeSpan.Zero, StunRetransmitPolicy.Default);
        var response = Response(id);
        Prop.ForAll<byte[], int, byte>((noise, at, value) =>
        {
            _ = table.TryPeek(noise ?? [], Ms(1), out _);
            var mutated = response.ToArray();
            mutated[Math.Abs(at % mutated.Length)] ^= (byte)(value | 1);
            if (table.TryPeek(mutated, Ms(1), out var m))
            {
                // A mutation that still matches can only have left the header's id, cookie, class and length alone.
                return m.Id == id && StunTransactionTable.IsResponse(mutated);
            }

            return true;
        }).QuickCheckThrowOnFailure();
        Assert.True(table.Contains(id));
    }
}
