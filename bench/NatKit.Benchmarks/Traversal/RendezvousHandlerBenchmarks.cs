using System.Net;
using BenchmarkDotNet.Attributes;
using NatKit.Stun;
using NatKit.Traversal.Identity;
using NatKit.Traversal.Rendezvous;

namespace NatKit.Benchmarks.Traversal;

/// <summary>
/// The rendezvous service's per-request core (docs/rendezvous.md, "Numbers"): what a request costs on each path a
/// flood can take (rate-limited silence, a nonce challenge, a forged signature) and on the paths real nodes take
/// (a lookup, a signed registration refresh).
/// </summary>
public class RendezvousHandlerBenchmarks
{
    private const int Nodes = 1024;

    private readonly byte[] _reply = new byte[RendezvousHandler.MaxReplyLength];
    private readonly List<RendezvousOutput> _outputs = [];
    private readonly IPEndPoint _asker = new(IPAddress.Parse("198.51.100.1"), 40000);
    private readonly IPEndPoint _limited = new(IPAddress.Parse("198.51.100.2"), 40000);
    private readonly IPEndPoint[] _sources = new IPEndPoint[Nodes];
    private readonly NodeIdentity[] _identities = new NodeIdentity[Nodes];
    private readonly byte[][] _nonces = new byte[Nodes][];
    private readonly long[] _timestamps = new long[Nodes];
    private readonly byte[] _buffer = new byte[1280];
    private RendezvousHandler _handler = null!;
    private RendezvousHandler _strict = null!;
    private byte[] _lookup = null!;
    private byte[] _unsigned = null!;
    private byte[] _forged = null!;
    private readonly FrozenWallClock _clock = new();
    private int _next;

    [GlobalSetup]
    public void Setup()
    {
        var options = new RendezvousServerOptions { RequestsPerSecondPerAddress = 1_000_000_000 };
        var local = new IPEndPoint(IPAddress.Loopback, RendezvousServerOptions.DefaultPort);
        _handler = new RendezvousHandler(options, local, _clock);
        _strict = new RendezvousHandler(new RendezvousServerOptions { RequestsPerSecondPerAddress = 1 }, local, _clock);
        var now = _clock.GetUtcNow().ToUnixTimeMilliseconds();
        for (var i = 0; i < Nodes; i++)
        {
            _identities[i] = NodeIdentity.Create();
            _sources[i] = new IPEndPoint(new IPAddress([10, 1, (byte)(i >> 8), (byte)i]), 40000);
            _nonces[i] = Nonce(_handler, _sources[i]);
            _timestamps[i] = now;
            Register(i);
        }

        var askerNonce = Nonce(_handler, _asker);
        _lookup = Build(b => RendezvousRequests.Lookup(b, StunTransactionId.NewRandom(), _identities[7].Id, askerNonce));
        _unsigned = Build(b => RendezvousRequests.Lookup(b, StunTransactionId.NewRandom(), _identities[7].Id, default));
        // A registration of node 0's key, signed, then one candidate byte changed: the signature fails. Its
        // timestamp is fresh and node 0's last one is older, so every check before the signature passes.
        _forged = Build(b => RendezvousRequests.Register(b, StunTransactionId.NewRandom(), _identities[0],
            ["candidate:1 1 udp 2130706431 10.0.0.2 40000 typ host"], now + 20_000, 120, _nonces[0]));
        _forged[_forged.AsSpan().IndexOf("typ host"u8)] ^= 1;
        _strict.Handle(_unsigned, _limited, _reply, _outputs); // spends the one token
        _outputs.Clear();
    }

    /// <summary>A source over its rate: dropped unread.</summary>
    [Benchmark]
    public int RateLimitedDrop() => _strict.Handle(_unsigned, _limited, _reply, _outputs).ReplyLength;

    /// <summary>A request without a nonce: a 401 with a fresh one (an HMAC, no state).</summary>
    [Benchmark]
    public int NonceChallenge() => _handler.Handle(_unsigned, _asker, _reply, _outputs).ReplyLength;

    /// <summary>A registration whose signature does not verify: the costliest thing a stranger can cause.</summary>
    [Benchmark]
    public int ForgedRegistration() => _handler.Handle(_forged, _sources[0], _reply, _outputs).ReplyLength;

    /// <summary>A lookup of a registered node: the signed record and its reflexive address.</summary>
    [Benchmark]
    public int Lookup() => _handler.Handle(_lookup, _asker, _reply, _outputs).ReplyLength;

    /// <summary>A node's signed refresh, built and signed (the node's cost) and verified (the service's).</summary>
    [Benchmark]
    public int SignAndRegister()
    {
        var i = _next++ % Nodes;
        return Register(i);
    }

    private int Register(int i)
    {
        _timestamps[i]++;
        var n = RendezvousRequests.Register(_buffer, StunTransactionId.NewRandom(), _identities[i],
            ["candidate:1 1 udp 2130706431 10.0.0.2 40000 typ host"], _timestamps[i], 120, _nonces[i]);
        var length = _handler.Handle(_buffer.AsSpan(0, n), _sources[i], _reply, _outputs).ReplyLength;
        if (!StunMessageReader.TryParse(_reply.AsSpan(0, length), out var r) || r.Class != StunClass.SuccessResponse)
        {
            throw new InvalidOperationException("a registration was refused");
        }

        return length;
    }

    private static byte[] Nonce(RendezvousHandler handler, IPEndPoint source)
    {
        var request = new byte[64];
        var n = RendezvousRequests.Lookup(request, StunTransactionId.NewRandom(), default, default);
        var reply = new byte[RendezvousHandler.MaxReplyLength];
        var length = handler.Handle(request.AsSpan(0, n), source, reply, []).ReplyLength;
        StunMessageReader.TryParse(reply.AsSpan(0, length), out var r);
        return r.TryGet(StunAttributeType.Nonce, out var nonce)
            ? nonce.ToArray()
            : throw new InvalidOperationException("no nonce");
    }

    /// <summary>Wall time stands still (so fixed signed messages stay fresh however long a run takes); the
    /// monotonic clock runs (the rate limiter's buckets refill as they would).</summary>
    private sealed class FrozenWallClock : TimeProvider
    {
        private readonly DateTimeOffset _now = DateTimeOffset.UtcNow;

        public override DateTimeOffset GetUtcNow() => _now;
    }

    private static byte[] Build(Func<byte[], int> write)
    {
        var buffer = new byte[1280];
        return buffer[..write(buffer)];
    }
}
