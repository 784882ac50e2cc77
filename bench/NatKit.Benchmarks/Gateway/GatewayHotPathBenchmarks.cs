using System.Buffers.Binary;
using BenchmarkDotNet.Attributes;
using NatKit.Linux;
using NatKit.Nat;
using NatKit.Nat.Ports;
using NatKit.Packets;

namespace NatKit.Benchmarks.Gateway;

/// <summary>
/// The gateway data plane's per-packet work without the syscalls: a 64 KiB TCP super-packet cut into segments (the
/// fallback path), 64 small datagrams gathered into one USO packet, and one UDP datagram with a partial checksum
/// through the engine and the checksum fix-up. All must allocate 0 B.
/// </summary>
[MemoryDiagnoser]
public class GatewayHotPathBenchmarks
{
    private static readonly Ipv4Address Lan = new(10, 0, 0, 2);
    private static readonly Ipv4Address Wan = new(198, 51, 100, 2);
    private readonly byte[] _super = new byte[40 + 65000];
    private readonly byte[] _segments = new byte[2 * 65536 + 4096];
    private readonly int[] _lengths = new int[128];
    private readonly byte[] _datagram = new byte[28 + 64];
    private readonly byte[] _work = new byte[2048];
    private readonly UdpCoalescer _coalescer = new();
    private VirtioNetHeader _tso;
    private VirtioNetHeader _partial;
    private NatEngine _engine = null!;

    [GlobalSetup]
    public void Setup()
    {
        PacketBuilder.WriteIpv4Tcp(_super, new Ipv4Header(Lan, Wan), new TcpHeader(40000, 80, 1, 1, TcpFlags.Ack), new byte[65000]);
        _tso = new VirtioNetHeader(VirtioNetHeader.NeedsChecksum, VirtioGsoType.TcpV4, 40, 1448, 20, 16);
        PacketBuilder.WriteIpv4Udp(_datagram, new Ipv4Header(Lan, Wan), 5000, 6000, new byte[64]);
        var pseudo = Checksum.PseudoHeader(Lan, Wan, IpProtocol.Udp, 72);
        BinaryPrimitives.WriteUInt16BigEndian(_datagram.AsSpan(26), (ushort)~Checksum.Finish(pseudo));
        _partial = new VirtioNetHeader(VirtioNetHeader.NeedsChecksum, VirtioGsoType.None, 0, 0, 20, 6);
        _engine = new NatEngine(NatKit.Linux.Gateway.Config(NatPresets.LinuxMasquerade, ["198.51.100.1"], ["10.0.0.0/24"]));
    }

    [GlobalCleanup]
    public void Cleanup() => _engine.Dispose();

    [Benchmark]
    public int Segment64KibTcp() => GsoSegmenter.Split(_super, _tso, _segments, VirtioNetHeader.Size, _lengths);

    [Benchmark]
    public int Coalesce64Datagrams()
    {
        _coalescer.Start(_datagram);
        for (var i = 1; i < UdpCoalescer.MaxSegments; i++)
        {
            _coalescer.TryAppend(_datagram, _partial);
        }

        return _coalescer.Take().Length;
    }

    [Benchmark]
    public int TranslateUdpWithPartialChecksum()
    {
        _datagram.CopyTo(_work, 0);
        var packet = _work.AsSpan();
        var sum = BinaryPrimitives.ReadUInt16BigEndian(packet[26..]);
        var source = BinaryPrimitives.ReadUInt32BigEndian(packet[12..]);
        var destination = BinaryPrimitives.ReadUInt32BigEndian(packet[16..]);
        var length = _datagram.Length;
        var verdict = _engine.Process(packet, ref length, NatDirection.Outbound, 1, null);
        PacketPump.MovePartialChecksum(packet, 26, sum, source, destination);
        return (int)verdict.Action + length;
    }
}
