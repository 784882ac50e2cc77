using System.Net;
using System.Text;
using NatKit.Stun;
using NatKit.Traversal.Identity;
using NatKit.Traversal.Rendezvous;

namespace NatKit.Traversal.Tests.Rendezvous;

/// <summary>A rendezvous handler on a manual clock, and nodes that talk to it by datagrams (no socket).</summary>
internal sealed class HandlerHarness
{
    public static readonly IPEndPoint ServerEndPoint = new(IPAddress.Parse("192.0.2.1"), 3479);

    public HandlerHarness(RendezvousServerOptions? options = null, ManualTimeProvider? time = null,
        string? instance = null)
    {
        Time = time ?? new ManualTimeProvider();
        Handler = new RendezvousHandler(options ?? new RendezvousServerOptions(), ServerEndPoint, Time, instance);
    }

    public ManualTimeProvider Time { get; }

    public RendezvousHandler Handler { get; }

    /// <summary>Everything the handler asked its edge to do so far (cleared by <see cref="TakeOutputs"/>).</summary>
    public List<RendezvousOutput> Outputs { get; } = [];

    public long UnixMs => Time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>Feeds one datagram; the parsed reply, or null for silence.</summary>
    public StunMessage? Send(ReadOnlySpan<byte> datagram, IPEndPoint source, RemoteLookup remote = default)
    {
        var reply = new byte[RendezvousHandler.MaxReplyLength];
        var verdict = Handler.Handle(datagram, source, reply, Outputs, remote);
        LastVerdict = verdict;
        return verdict.ReplyLength == 0 ? null : StunMessage.Parse(reply.AsSpan(0, verdict.ReplyLength));
    }

    public RendezvousVerdict LastVerdict { get; private set; }

    public List<RendezvousOutput> TakeOutputs()
    {
        var list = Outputs.ToList();
        Outputs.Clear();
        return list;
    }

    /// <summary>Moves the clock, polling the handler at each of its deadlines on the way (as the edge's timer does).</summary>
    public void Advance(TimeSpan by)
    {
        var left = by;
        while (true)
        {
            var due = Handler.DueIn;
            if (due > left)
            {
                Time.Advance(left);
                Handler.Poll(Outputs);
                return;
            }

            Time.Advance(due);
            left -= due;
            Handler.Poll(Outputs);
        }
    }

    public Node NewNode(string address, int port = 40000) =>
        new(this, NodeIdentity.Create(), new IPEndPoint(IPAddress.Parse(address), port));
}

/// <summary>A node as the handler sees it: a key and a source endpoint.</summary>
internal sealed class Node(HandlerHarness harness, NodeIdentity identity, IPEndPoint endPoint)
{
    public NodeIdentity Identity { get; } = identity;

    public IPEndPoint EndPoint { get; set; } = endPoint;

    public byte[] Nonce { get; set; } = [];

    public NodeId Id => Identity.Id;

    /// <summary>Gets a nonce the way a client does: a request without one earns a 401 that carries it.</summary>
    public byte[] FetchNonce()
    {
        var buffer = new byte[1280];
        var n = RendezvousRequests.Lookup(buffer, StunTransactionId.NewRandom(), Id, default);
        var reply = harness.Send(buffer.AsSpan(0, n), EndPoint)!;
        Assert.Equal(StunErrorCode.Unauthenticated, ErrorCode(reply));
        Nonce = reply.Attributes.Single(a => a.Type == StunAttributeType.Nonce).Value;
        return Nonce;
    }

    public byte[] RegisterBytes(long? timestamp = null, uint lifetime = 120, params string[] candidates)
    {
        var buffer = new byte[1280];
        var n = RendezvousRequests.Register(buffer, StunTransactionId.NewRandom(), Identity,
            candidates.Length == 0 ? ["candidate:1 1 udp 2130706431 10.0.0.2 40000 typ host"] : candidates,
            timestamp ?? harness.UnixMs, lifetime, Nonce);
        return buffer[..n];
    }

    public StunMessage? Register(long? timestamp = null, uint lifetime = 120, params string[] candidates)
    {
        if (Nonce.Length == 0)
        {
            FetchNonce();
        }

        return harness.Send(RegisterBytes(timestamp, lifetime, candidates), EndPoint);
    }

    public StunMessage? Lookup(NodeId target, RemoteLookup remote = default)
    {
        var buffer = new byte[1280];
        var n = RendezvousRequests.Lookup(buffer, StunTransactionId.NewRandom(), target, Nonce);
        return harness.Send(buffer.AsSpan(0, n), EndPoint, remote);
    }

    public byte[] ConnectBytes(NodeId target, string offer = "offer", long? timestamp = null)
    {
        var buffer = new byte[1280];
        var n = RendezvousRequests.Connect(buffer, StunTransactionId.NewRandom(), Identity, target,
            Encoding.UTF8.GetBytes(offer), timestamp ?? harness.UnixMs, Nonce);
        return buffer[..n];
    }

    public StunMessage? Connect(NodeId target, string offer = "offer", long? timestamp = null,
        RemoteLookup remote = default) =>
        harness.Send(ConnectBytes(target, offer, timestamp), EndPoint, remote);

    public StunMessage? Answer(NodeId initiator, ulong cid, string answer = "answer", long? timestamp = null)
    {
        var buffer = new byte[1280];
        var n = RendezvousRequests.Answer(buffer, StunTransactionId.NewRandom(), Identity, initiator, cid,
            Encoding.UTF8.GetBytes(answer), timestamp ?? harness.UnixMs, Nonce);
        return harness.Send(buffer.AsSpan(0, n), EndPoint);
    }

    /// <summary>Answers one of the service's requests with an empty success response.</summary>
    public void Acknowledge(StunMessage request)
    {
        var buffer = new byte[64];
        var n = RendezvousRequests.Acknowledge(buffer, request.Method, request.TransactionId);
        Assert.Null(harness.Send(buffer.AsSpan(0, n), EndPoint));
    }

    public static int ErrorCode(StunMessage? m)
    {
        Assert.NotNull(m);
        var bytes = m.ToArray();
        Assert.True(StunMessageReader.TryParse(bytes, out var r));
        return r.TryGetErrorCode(out var code, out _) ? code : 0;
    }
}

internal static class StunMessageTestExtensions
{
    public static byte[]? Value(this StunMessage m, ushort type) =>
        m.Attributes.FirstOrDefault(a => a.Type == type)?.Value;

    public static ulong UInt64(this StunMessage m, ushort type) =>
        System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(m.Value(type));

    public static uint UInt32(this StunMessage m, ushort type) =>
        System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(m.Value(type));

    public static IPEndPoint XorAddress(this StunMessage m, ushort type)
    {
        Assert.True(StunAddress.TryDecodeXor(m.Value(type), m.TransactionId, out var a));
        return a.ToEndPoint();
    }

    /// <summary>The requests the handler asked to send, parsed, with their destinations.</summary>
    public static List<(StunMessage Message, IPEndPoint To)> Sends(this IEnumerable<RendezvousOutput> outputs) =>
        outputs.Where(o => o.Kind == RendezvousOutputKind.Send)
            .Select(o => (StunMessage.Parse(o.Data.Span)!, o.Destination!)).ToList();
}
