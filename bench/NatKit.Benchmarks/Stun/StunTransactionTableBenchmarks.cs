using System.Net;
using BenchmarkDotNet.Attributes;
using NatKit.Stun;
using NatKit.Stun.Transactions;

namespace NatKit.Benchmarks.Stun;

/// <summary>The shared transaction table's per-transaction work (register, match the response, poll): 0 B.</summary>
[MemoryDiagnoser]
public class StunTransactionTableBenchmarks
{
    private readonly StunTransactionTable _table = new(1024);
    private readonly List<StunTransactionDue> _due = new(16);
    private readonly IPEndPoint _server = new(IPAddress.Parse("192.0.2.1"), 3478);
    private readonly byte[] _request = new byte[28];
    private readonly byte[] _response = new byte[20];
    private StunTransactionId _id;
    private TimeSpan _now;

    [GlobalSetup]
    public void Setup()
    {
        _id = StunTransactionId.NewRandom();
        new StunMessageWriter(_request, StunMethods.Binding, StunClass.Request, _id).AddFingerprint();
        _ = new StunMessageWriter(_response, StunMethods.Binding, StunClass.SuccessResponse, _id);
    }

    [Benchmark]
    public bool AddMatchPoll()
    {
        _now += TimeSpan.FromMilliseconds(1);
        _table.TryAdd(_id, _request, _server, _now, StunRetransmitPolicy.Default);
        var matched = _table.TryMatch(_response, _now, out _);
        _due.Clear();
        _table.Poll(_now, _due);
        return matched;
    }
}
