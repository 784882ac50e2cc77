using BenchmarkDotNet.Attributes;
using NatKit.Nat;
using NatKit.Packets;

namespace NatKit.Benchmarks.Nat;

/// <summary>
/// Established-flow translation, the hot path: 1024 live flows, each packet a copy of its template (a 92/104-byte
/// packet; the copy is part of the measured cost) translated in place. Target: at least 20 million packets/s
/// (about 50 ns) and 0 B allocated.
/// </summary>
[MemoryDiagnoser]
[IterationCount(20)]
public class EstablishedFlowBenchmarks
{
    private const int Flows = 1024;
    private NatEngine _nat = null!;
    private byte[][] _udpOut = null!;
    private byte[][] _udpIn = null!;
    private byte[][] _tcpOut = null!;
    private readonly byte[] _work = new byte[256];
    private long _now;

    [GlobalSetup]
    public void Setup()
    {
        _nat = NatBenchSetup.Engine(NatPresets.RfcRecommended, 1 << 16);
        _udpOut = new byte[Flows][];
        _udpIn = new byte[Flows][];
        _tcpOut = new byte[Flows][];
        for (var i = 0; i < Flows; i++)
        {
            var (a, p) = NatBenchSetup.Inside(i);
            _udpOut[i] = NatBenchSetup.Udp(a, p, NatBenchSetup.Remote, 443);
            var first = (byte[])_udpOut[i].Clone();
            var length = first.Length;
            _nat.Process(first, ref length, NatDirection.Outbound, 0, null);
            Ipv4Packet.TryParse(first, out var translated);
            _udpIn[i] = NatBenchSetup.Udp(NatBenchSetup.Remote, 443, translated.Source, (ushort)((first[20] << 8) | first[21]));
            _tcpOut[i] = NatBenchSetup.Tcp(a, p, NatBenchSetup.Remote, 443, TcpFlags.Ack);
            var syn = NatBenchSetup.Tcp(a, p, NatBenchSetup.Remote, 443, TcpFlags.Syn);
            length = syn.Length;
            _nat.Process(syn, ref length, NatDirection.Outbound, 0, null);
        }
    }

    [GlobalCleanup]
    public void Cleanup() => _nat.Dispose();

    [Benchmark(OperationsPerInvoke = Flows)]
    public int UdpOutbound() => Run(_udpOut, NatDirection.Outbound);

    [Benchmark(OperationsPerInvoke = Flows)]
    public int UdpInbound() => Run(_udpIn, NatDirection.Inbound);

    [Benchmark(OperationsPerInvoke = Flows)]
    public int TcpOutbound() => Run(_tcpOut, NatDirection.Outbound);

    private int Run(byte[][] packets, NatDirection direction)
    {
        var forwarded = 0;
        var work = _work.AsSpan();
        for (var i = 0; i < packets.Length; i++)
        {
            var p = packets[i];
            p.CopyTo(work);
            var length = p.Length;
            if (_nat.Process(work, ref length, direction, _now, null).IsForward) forwarded++;
        }

        _now += 1; // time moves on: 1 ms per batch
        return forwarded;
    }
}
