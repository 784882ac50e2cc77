using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using NatKit.Scenarios.Matrix;
using NatKit.Stun.Client;
using NatKit.Traversal;

namespace NatKit.Scenarios.Tests;

/// <summary>The matrix's machinery around a cell runner: cells, seeds, parallel labs, time accounting, failures,
/// and the JSON and HTML renderings (of constructed outcomes: this tests the renderer, not a traversal).</summary>
public sealed class MatrixRunTests
{
    private static MatrixType T(string name) => MatrixTypes.Find(name)!;

    /// <summary>Not a traversal: each peer asks the rendezvous for its mapping (so the lab really runs, in virtual
    /// time), and the outcome says which port A's NAT gave, to see that a cell's lab repeats from its seed.</summary>
    private static MatrixOutcome StunBothPeers(MatrixCellLab cell, MatrixOptions options) =>
        cell.Lab.Run(async () =>
        {
            await MatrixServices.StartAsync(cell);
            await using var a = await cell.A.BindUdpAsync(new IPEndPoint(IPAddress.Any, 0));
            await using var b = await cell.B.BindUdpAsync(new IPEndPoint(IPAddress.Any, 0));
            var ma = await new StunClient(cell.A).BindingAsync(a, cell.Rendezvous);
            var mb = await new StunClient(cell.B).BindingAsync(b, cell.Rendezvous);
            return MatrixOutcome.Failed($"{ma?.MappedAddress} {mb?.MappedAddress} thread {Environment.CurrentManagedThreadId}");
        });

    [Fact]
    public void Run_GivesEveryCellInOrder_WithItsSeed_VirtualAndWallTime_AndTheOraclesVerdict()
    {
        var options = new MatrixOptions
        {
            Types = [T("open"), T("symmetric-random"), T("easy"), T("same-lan")],
            Seed = 42,
            Parallelism = 2,
        };
        var done = new ConcurrentBag<MatrixCellResult>();
        var result = TraversalMatrix.Run(options, StunBothPeers, done.Add);

        Assert.Equal(3 * 3 + 1, result.Cells.Count);
        Assert.Equal(result.Cells.Count, done.Count);
        Assert.Equal(TraversalMatrix.Cells(options.Types).Select(c => (c.A.Name, c.B.Name)),
            result.Cells.Select(c => (c.A.Name, c.B.Name)));
        foreach (var c in result.Cells)
        {
            Assert.Equal(TraversalMatrix.CellSeed(42, c.A.Name, c.B.Name), c.Seed);
            Assert.True(c.VirtualTime > TimeSpan.Zero, $"{c.A} x {c.B}: no virtual time");
            Assert.True(c.WallTime > TimeSpan.Zero);
            Assert.Equal(TraversalOracle.Predict(c.A, c.B, options.OracleOptions), c.Expected);
            Assert.Contains("198.51.100.", c.Outcome.Detail, StringComparison.Ordinal);
        }

        Assert.True(result.WallTime >= result.Cells.Max(c => c.WallTime));
        Assert.Equal(1, result.ExitCode); // every cell "failed": nothing here pretends to connect
        Assert.Equal(result.Cells.Count, result.FailedWithRelay);
    }

    [Fact]
    public void ACell_RepeatsExactlyFromItsSeed_AndAnotherSeedGivesAnotherLab()
    {
        // symmetric-random: A's NAT draws its external port from the lab's random source.
        MatrixOutcome Once(int seed) => TraversalMatrix.RunCell(T("symmetric-random"), T("open"),
            new MatrixOptions { Seed = seed }, StunBothPeers).Outcome;
        static string Mapped(MatrixOutcome o) => o.Detail![..o.Detail!.IndexOf(" thread", StringComparison.Ordinal)];
        Assert.Equal(Mapped(Once(1)), Mapped(Once(1)));
        Assert.NotEqual(Mapped(Once(1)), Mapped(Once(2)));
    }

    [Fact]
    public void CellSeed_IsStable_AndDiffersByOrderTypeAndRunSeed()
    {
        Assert.Equal(TraversalMatrix.CellSeed(1, "easy", "open"), TraversalMatrix.CellSeed(1, "easy", "open"));
        Assert.NotEqual(TraversalMatrix.CellSeed(1, "easy", "open"), TraversalMatrix.CellSeed(1, "open", "easy"));
        Assert.NotEqual(TraversalMatrix.CellSeed(1, "easy", "open"), TraversalMatrix.CellSeed(2, "easy", "open"));
        Assert.NotEqual(TraversalMatrix.CellSeed(1, "easy", "open"), TraversalMatrix.CellSeed(1, "easyaf", "open"));
        Assert.True(TraversalMatrix.CellSeed(int.MinValue, "a", "b") >= 0);
    }

    [Fact]
    public void ARunnerThatThrows_FailsItsCell_WithTheReason_AndTheOthersStillRun()
    {
        var result = TraversalMatrix.Run(new MatrixOptions { Types = [T("open"), T("easy")] }, (cell, _) =>
            cell.TypeA.Name == "easy" && cell.TypeB.Name == "open"
                ? throw new InvalidOperationException("agent crashed")
                : new MatrixOutcome(MatrixPath.Direct, TraversalMethod.Reflexive, TimeSpan.FromMilliseconds(30), 4));
        var crashed = result.Cell("easy", "open")!;
        Assert.Equal(MatrixPath.Failed, crashed.Path);
        Assert.Contains("agent crashed", crashed.Outcome.Detail, StringComparison.Ordinal);
        Assert.All(result.Cells.Where(c => c != crashed), c => Assert.Equal(MatrixPath.Direct, c.Path));
        Assert.Equal(1, result.ExitCode);
    }

    private static MatrixResult Constructed()
    {
        var options = new MatrixOptions { Types = [T("easy"), T("symmetric-random"), T("same-lan")], Seed = 9 };
        MatrixOutcome Outcome(MatrixType a, MatrixType b) => (a.Name, b.Name) switch
        {
            ("symmetric-random", "symmetric-random") => new(MatrixPath.Relay, TraversalMethod.Relay, TimeSpan.FromMilliseconds(812.5), 1030, TimeSpan.FromMilliseconds(40)),
            ("same-lan", _) => new(MatrixPath.Direct, TraversalMethod.Host, TimeSpan.FromMilliseconds(12), 2),
            ("easy", "symmetric-random") => MatrixOutcome.Failed("no pair <nominated> & \"timed out\"", 1024),
            _ => new(MatrixPath.Direct, TraversalMethod.Birthday, TimeSpan.FromMilliseconds(345.25), 300),
        };
        var cells = TraversalMatrix.Cells(options.Types).Select(c => new MatrixCellResult(c.A, c.B, 1, Outcome(c.A, c.B),
            TraversalOracle.Predict(c.A, c.B), TimeSpan.FromSeconds(2), TimeSpan.FromMilliseconds(3))).ToList();
        return new MatrixResult(options, cells, TimeSpan.FromMilliseconds(1234));
    }

    [Fact]
    public void JsonRecords_AreNamedByTheirCell_WithCamelCaseFields()
    {
        var records = MatrixReport.Records(Constructed()).ToList();
        Assert.Equal(5, records.Count);
        var docs = records.Select(r => (r.Name, Doc: JsonDocument.Parse(r.Json))).ToList();
        var cells = docs.Select(d => d.Doc.RootElement).ToList();
        Assert.All(docs, d => Assert.Equal($"{d.Doc.RootElement.GetProperty("a").GetString()} x {d.Doc.RootElement.GetProperty("b").GetString()}", d.Name));
        var relay = cells.Single(c => c.GetProperty("a").GetString() == "symmetric-random" && c.GetProperty("b").GetString() == "symmetric-random");
        Assert.Equal("relay", relay.GetProperty("path").GetString());
        Assert.Equal("relay", relay.GetProperty("method").GetString());
        Assert.Equal(812.5, relay.GetProperty("connectMs").GetDouble());
        Assert.True(relay.GetProperty("agrees").GetBoolean());
        var failed = cells.Single(c => c.GetProperty("a").GetString() == "easy" && c.GetProperty("b").GetString() == "symmetric-random");
        Assert.Equal("failed", failed.GetProperty("path").GetString());
        Assert.Equal(JsonValueKind.Null, failed.GetProperty("method").ValueKind);
        Assert.Equal(JsonValueKind.Null, failed.GetProperty("connectMs").ValueKind);
        Assert.False(failed.GetProperty("agrees").GetBoolean());
        Assert.Equal("birthday", cells.Single(c => c.GetProperty("a").GetString() == "symmetric-random" && c.GetProperty("b").GetString() == "easy")
            .GetProperty("method").GetString());
        Assert.Equal("host", cells.Single(c => c.GetProperty("a").GetString() == "same-lan").GetProperty("method").GetString());
        foreach (var path in cells.Select(c => c.GetProperty("path").GetString()))
        {
            Assert.Contains(path, new[] { "direct", "hairpin", "relay", "failed" });
        }
    }

    [Fact]
    public void Html_IsOneSelfContainedPage_TheGridColouredByPath_EachCellsDetailEscapedInItsTitle()
    {
        var html = MatrixReport.ToHtml(Constructed());
        Assert.StartsWith("<!DOCTYPE html>", html, StringComparison.Ordinal);
        Assert.DoesNotContain("src=", html, StringComparison.Ordinal);   // no external script or image
        Assert.DoesNotContain("href=", html, StringComparison.Ordinal);  // no stylesheet link
        Assert.Equal(5, CountOf(html, "<td class=\"cell "));
        Assert.Equal(1, CountOf(html, "<td class=\"cell relay\""));
        Assert.Equal(1, CountOf(html, "<td class=\"cell failed disagrees\""));
        Assert.Equal(3, CountOf(html, "<td class=\"cell direct\""));
        Assert.Contains("no pair &lt;nominated&gt; &amp; &quot;timed out&quot;", html, StringComparison.Ordinal);
        Assert.DoesNotContain("<nominated>", html, StringComparison.Ordinal);
        Assert.Contains("<h2>Two hosts on one LAN</h2>", html, StringComparison.Ordinal);
        Assert.Contains("addEventListener('click'", html, StringComparison.Ordinal);
    }

    private static int CountOf(string text, string part)
    {
        var n = 0;
        for (var i = text.IndexOf(part, StringComparison.Ordinal); i >= 0; i = text.IndexOf(part, i + 1, StringComparison.Ordinal))
        {
            n++;
        }

        return n;
    }
}
