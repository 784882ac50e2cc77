using BenchmarkDotNet.Attributes;
using NatKit.Packets;

namespace NatKit.Benchmarks.Packets;

/// <summary>RFC 1071 checksum throughput on a minimum-size and a full-MTU buffer.</summary>
public class ChecksumBenchmarks
{
    private byte[] _data = [];

    [Params(64, 1500)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _data = new byte[Size];
        new Random(1).NextBytes(_data);
    }

    [Benchmark]
    public ushort Compute() => Checksum.Compute(_data);
}
