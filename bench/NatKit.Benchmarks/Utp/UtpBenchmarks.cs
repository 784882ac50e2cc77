using System.Net;
using BenchmarkDotNet.Attributes;
using NatKit.Net;
using NatKit.Utp;

namespace NatKit.Benchmarks.Utp;

/// <summary>The per-packet parts of uTP: parsing and classifying must allocate 0 B.</summary>
public class UtpPacketBenchmarks
{
    private readonly byte[] _data = new byte[1400];
    private readonly byte[] _state = new byte[UtpHeader.Size + 2 + 8];
    private readonly DatagramClassifier _classifier = new();
    private readonly IPEndPoint _peer = new(IPAddress.Loopback, 4000);

    [GlobalSetup]
    public void Setup()
    {
        UtpHeader.Write(_data, UtpPacketType.Data, 0, 1234, 1, 2, 3, 4, 5);
        UtpHeader.Write(_state, UtpPacketType.State, UtpHeader.SelectiveAckExtension, 1234, 1, 2, 3, 4, 5);
        UtpHeader.WriteSelectiveAck(_state.AsSpan(UtpHeader.Size), 0, new byte[8]);
        _classifier.AddTurnServer(new IPEndPoint(IPAddress.Loopback, 3478));
    }

    [Benchmark]
    public int ParseData() => UtpHeader.TryParse(_data, out var h) ? h.Payload.Length : -1;

    [Benchmark]
    public int ParseStateWithSelectiveAck() => UtpHeader.TryParse(_state, out var h) ? h.SelectiveAck.Length : -1;

    [Benchmark]
    public DatagramKind Classify() => _classifier.Classify(_data, _peer);
}

/// <summary>
/// A whole connection on loopback: 4 MiB (about 3,000 data packets and their ACKs) per operation. The allocation
/// column divided by the packet count is the per-packet cost, which must be 0: what remains is per write call
/// (the writer's async state machine) and per run, not per packet.
/// </summary>
public class UtpLoopbackBenchmarks
{
    private const int Bytes = 4 * 1024 * 1024;
    private readonly byte[] _chunk = new byte[256 * 1024];
    private readonly byte[] _buffer = new byte[256 * 1024];
    private UtpSocket _server = null!;
    private UtpSocket _client = null!;
    private UtpStream _sender = null!;
    private UtpStream _receiver = null!;

    [GlobalSetup]
    public void Setup()
    {
        var loopback = new IPEndPoint(IPAddress.Loopback, 0);
        _server = UtpSocket.BindAsync(SystemNetwork.Instance, loopback).AsTask().GetAwaiter().GetResult();
        _client = UtpSocket.BindAsync(SystemNetwork.Instance, loopback).AsTask().GetAwaiter().GetResult();
        var accept = _server.AcceptAsync().AsTask();
        _sender = _client.ConnectAsync(_server.LocalEndPoint).AsTask().GetAwaiter().GetResult();
        _receiver = accept.GetAwaiter().GetResult();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _sender.Dispose();
        _receiver.Dispose();
        _client.Dispose();
        _server.Dispose();
    }

    [Benchmark]
    public Task<long> Transfer4MiB() => ReceiveAllAsync(WriteAsync());

    private async Task<long> ReceiveAllAsync(Task writing)
    {
        long received = 0;
        while (received < Bytes)
        {
            received += await _receiver.ReadAsync(_buffer);
        }

        await writing;
        return received;
    }

    /// <summary>The same bytes written the way a pipe writes through TLS: bursts of four 16 KiB records, each burst
    /// corked (<see cref="UtpStream.Cork"/>), so uTP holds the short remainders back; the hold adds no allocation.</summary>
    [Benchmark]
    public Task<long> Transfer4MiB_CorkedRecords() => ReceiveAllAsync(WriteCorkedAsync());

    private async Task WriteCorkedAsync()
    {
        const int record = 16 * 1024;
        for (var sent = 0; sent < Bytes; sent += 4 * record)
        {
            _sender.Cork();
            for (var i = 0; i < 4; i++)
            {
                await _sender.WriteAsync(_chunk.AsMemory(0, record));
            }

            _sender.Uncork();
        }
    }

    private async Task WriteAsync()
    {
        for (var sent = 0; sent < Bytes; sent += _chunk.Length)
        {
            await _sender.WriteAsync(_chunk);
        }
    }
}
