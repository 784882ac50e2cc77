using System.Buffers;
using System.Net;
using System.Threading.Channels;
using NatKit.Net;

namespace NatKit.Utp.Internal;

/// <summary>The non-uTP side of a shared UDP socket: a bounded queue of pooled copies of the datagrams the
/// classifier did not claim for uTP, and sends that go straight to the shared socket.</summary>
internal sealed class OtherTrafficSocket : IDatagramSocket
{
    private readonly IDatagramSocket _shared;
    private readonly Channel<Item> _queue;

    public OtherTrafficSocket(IDatagramSocket shared, int capacity)
    {
        _shared = shared;
        _queue = Channel.CreateBounded<Item>(
            new BoundedChannelOptions(capacity)
            {
                FullMode = BoundedChannelFullMode.DropOldest,
                SingleReader = true,
                SingleWriter = false, // OnDatagram is public: an owner may feed packets from its own loop
            },
            static dropped => ArrayPool<byte>.Shared.Return(dropped.Buffer));
    }

    public IPEndPoint LocalEndPoint => _shared.LocalEndPoint;

    public void Enqueue(ReadOnlySpan<byte> datagram, IPEndPoint source)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(Math.Max(1, datagram.Length));
        datagram.CopyTo(buffer);
        if (!_queue.Writer.TryWrite(new Item(buffer, datagram.Length, source)))
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    public void Complete() => _queue.Writer.TryComplete();

    public ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint,
        CancellationToken cancellationToken = default) =>
        _shared.SendToAsync(datagram, remoteEndPoint, cancellationToken);

    public async ValueTask<ReceivedDatagram> ReceiveFromAsync(Memory<byte> buffer,
        CancellationToken cancellationToken = default)
    {
        Item item;
        try
        {
            item = await _queue.Reader.ReadAsync(cancellationToken);
        }
        catch (ChannelClosedException e)
        {
            throw new ObjectDisposedException("the uTP endpoint sharing this socket was closed", e);
        }

        var n = Math.Min(item.Length, buffer.Length);
        item.Buffer.AsSpan(0, n).CopyTo(buffer.Span);
        ArrayPool<byte>.Shared.Return(item.Buffer);
        return new ReceivedDatagram(n, item.Source);
    }

    public void Dispose() => Complete();

    public ValueTask DisposeAsync()
    {
        Complete();
        return ValueTask.CompletedTask;
    }

    private readonly record struct Item(byte[] Buffer, int Length, IPEndPoint Source);
}
