using System.Net.WebSockets;
using NatKit.Packets;
using NatKit.Tunnel.Link;

namespace NatKit.Tunnel.Tests;

/// <summary>
/// The data plane sends a link's messages itself while the socket takes them at once, and hands a send that has to
/// wait to the send loop: nothing is lost, doubled or reordered across the handover.
/// </summary>
public sealed class TunnelLinkSendTests
{
    /// <summary>A stream whose writes are recorded; the second write waits until the test opens the gate. Reads wait
    /// until it is disposed.</summary>
    private sealed class GatedStream(int expectedWrites) : Stream
    {
        private readonly TaskCompletionSource _gate = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource<int> _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly MemoryStream _written = new();
        private readonly Lock _lock = new();
        private int _writes;
        private int _done;

        public TaskCompletionSource GatedWriteStarted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource AllWritten { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Writes => Volatile.Read(ref _writes);

        public void Open() => _gate.TrySetResult();

        public byte[] Written()
        {
            lock (_lock)
            {
                return _written.ToArray();
            }
        }

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var n = Interlocked.Increment(ref _writes);
            if (n == 2)
            {
                GatedWriteStarted.TrySetResult();
                await _gate.Task.WaitAsync(cancellationToken);
            }

            lock (_lock)
            {
                _written.Write(buffer.Span);
                if (_written.Length > 0 && ++_done == expectedWrites)
                {
                    AllWritten.TrySetResult();
                }
            }
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            new(_closed.Task.WaitAsync(cancellationToken));

        protected override void Dispose(bool disposing)
        {
            _closed.TrySetResult(0);
            base.Dispose(disposing);
        }

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();
    }

    private static byte[] Packet(int i)
    {
        var buffer = new byte[100];
        var n = PacketBuilder.WriteIpv4Udp(buffer, new Ipv4Header(Ipv4Address.Parse("10.99.0.2"), Ipv4Address.Parse("203.0.113.2")),
            (ushort)(40000 + i), 53, [(byte)i]);
        return buffer[..n];
    }

    [Fact]
    public async Task ASendThatHasToWait_IsHandedToTheSendLoop_AndEveryMessageArrivesOnceInOrder()
    {
        var stream = new GatedStream(expectedWrites: 6);
        var socket = WebSocket.CreateFromStream(stream, new WebSocketCreationOptions { IsServer = false, KeepAliveInterval = TimeSpan.Zero });
        var link = new TunnelLink(socket, offloads: false, TimeProvider.System);
        var running = link.RunAsync();
        var scratch = new byte[2 * Nat.Ports.PacketPump.FrameSize];
        var lengths = new int[512];

        // batch 1: the socket takes it at once, so the data plane sends it on this thread
        Assert.True(link.TrySend(Packet(0), VirtioNetHeader.None, scratch, lengths));
        link.SendFromDataPlane();
        Assert.Equal(1, link.Stats.PacketsOut);
        Assert.Equal(0, link.Outbound.Count);

        // batch 2: its first write waits at the gate, so the data plane hands it to the send loop and returns
        for (var i = 1; i < 4; i++)
        {
            Assert.True(link.TrySend(Packet(i), VirtioNetHeader.None, scratch, lengths));
        }

        link.SendFromDataPlane();
        await stream.GatedWriteStarted.Task.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(1, link.Stats.PacketsOut);

        // batch 3, queued while the send loop holds the sender: the data plane only wakes the loop
        for (var i = 4; i < 6; i++)
        {
            Assert.True(link.TrySend(Packet(i), VirtioNetHeader.None, scratch, lengths));
        }

        link.SendFromDataPlane();
        Assert.Equal(1, link.Stats.PacketsOut);
        stream.Open();
        await stream.AllWritten.Task.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(0, link.Stats.OutboundDropped);
        Assert.Equal(6, stream.Writes);

        link.Stop();
        await running.WaitAsync(TimeSpan.FromSeconds(20));

        // the bytes on the wire are the six messages, in order
        var reader = WebSocket.CreateFromStream(new MemoryStream(stream.Written()),
            new WebSocketCreationOptions { IsServer = true, KeepAliveInterval = TimeSpan.Zero });
        var buffer = new byte[200];
        for (var i = 0; i < 6; i++)
        {
            var r = await reader.ReceiveAsync(buffer.AsMemory(), CancellationToken.None);
            Assert.True(r.EndOfMessage);
            Assert.Equal(Packet(i), buffer[..r.Count]);
        }
    }
}
