using System.Net;
using BenchmarkDotNet.Attributes;
using NatKit.Stun;
using NatKit.Stun.Transactions;

namespace NatKit.Benchmarks.Net;

/// <summary>
/// The push path of a shared socket's receivers, per datagram: the STUN transaction table passing on a datagram that
/// is not a response to it (uTP, probes: every datagram of a transfer crosses it first), and a whole owner-sent
/// transaction (register, arm the one timer, claim the response, end it). Both must allocate 0 B.
/// </summary>
[MemoryDiagnoser]
public class SharedSocketBenchmarks
{
    private readonly IPEndPoint _server = new(IPAddress.Parse("192.0.2.1"), 3478);
    private readonly byte[] _utp = new byte[1200];
    private readonly byte[] _request = new byte[28];
    private readonly byte[] _response = new byte[20];
    private readonly Owner _owner = new();
    private StunTransactions _transactions = null!;

    [GlobalSetup]
    public void Setup()
    {
        _utp[0] = 0x01; // a uTP DATA header starts like a STUN success response
        _utp[1] = 0x00;
        var id = StunTransactionId.NewRandom();
        new StunMessageWriter(_request, StunMethods.Binding, StunClass.Request, id).AddFingerprint();
        _ = new StunMessageWriter(_response, StunMethods.Binding, StunClass.SuccessResponse, id);
        _transactions = new StunTransactions(TimeProvider.System);
        // One transaction always pending, as on a busy node: the pass-on case must still look at the table.
        var other = new byte[20];
        _ = new StunMessageWriter(other, StunMethods.Binding, StunClass.Request, StunTransactionId.NewRandom());
        _transactions.TryAdd(other, _server, StunRetransmitPolicy.Reliable(TimeSpan.FromMinutes(10)), _owner);
    }

    [GlobalCleanup]
    public void Cleanup() => _transactions.Dispose();

    /// <summary>A uTP datagram offered to the table: not a response, passed on.</summary>
    [Benchmark(Baseline = true)]
    public bool PassOnNonResponse() => _transactions.TryReceive(_utp, _server);

    /// <summary>An owner-sent transaction from registration to its response.</summary>
    [Benchmark]
    public bool TransactionRegisteredAndAnswered()
    {
        _transactions.TryAdd(_request, _server, StunRetransmitPolicy.Default, _owner);
        return _transactions.TryReceive(_response, _server);
    }

    private sealed class Owner : IStunTransactionOwner
    {
        public int Responses;

        public void OnResponse(ReadOnlySpan<byte> response, IPEndPoint source, in StunTransactionMatch match) =>
            Responses++;

        public void OnRetransmit(in StunTransactionDue due)
        {
        }

        public void OnTimeout(in StunTransactionDue due)
        {
        }
    }
}
