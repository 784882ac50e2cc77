using System.Buffers;
using System.Net;
using System.Threading.Channels;
using NatKit.Net;
using NatKit.Turn.Client;

namespace NatKit.Traversal.Tests.Ice;

/// <summary>
/// A TURN allocation as an <see cref="IDatagramSocket"/> for the driver's lab tests: sends go through the relay to
/// peers the caller created a permission for (others are dropped, as the server would drop them), and data the
/// relay forwards comes back with the peer's address. The shared-socket work makes TurnClient itself such a socket;
/// until then this is the seam the driver's relayed candidate needs. Create it on the lab's thread, inside the
/// scenario: its pump awaits the client there, so continuations stay on the lab (TurnClient's own channel and
/// transactions would hand them to the thread pool otherwise).
/// </summary>
internal sealed class TurnRelaySocket : IDatagramSocket
{
    private readonly TurnClient _client;
    private readonly HashSet<IPAddress> _permitted = [];
    private readonly Channel<(byte[] Buffer, int Length, IPEndPoint Peer)> _inbox =
        Channel.CreateUnbounded<(byte[], int, IPEndPoint)>(new UnboundedChannelOptions
        {
            AllowSynchronousContinuations = true,
            SingleReader = true,
        });

    public TurnRelaySocket(TurnClient client)
    {
        _client = client;
        _ = PumpAsync();
    }

    public IPEndPoint LocalEndPoint => _client.RelayedEndPoint;

    /// <summary>What an ICE agent does for each remote candidate it pairs with its relayed one.</summary>
    public async Task PermitAsync(IPAddress peer)
    {
        await _client.CreatePermissionAsync(peer);
        _permitted.Add(peer);
    }

    public async ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint,
        CancellationToken cancellationToken = default)
    {
        if (!_permitted.Contains(remoteEndPoint.Address))
        {
            return 0;
        }

        await _client.SendAsync(datagram, remoteEndPoint, cancellationToken).ConfigureAwait(false);
        return datagram.Length;
    }

    public async ValueTask<ReceivedDatagram> ReceiveFromAsync(Memory<byte> buffer,
        CancellationToken cancellationToken = default)
    {
        while (true)
        {
            (byte[] Buffer, int Length, IPEndPoint Peer) item;
            try
            {
                item = await _inbox.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (ChannelClosedException)
            {
                throw new ObjectDisposedException(nameof(TurnRelaySocket));
            }

            try
            {
                if (item.Length <= buffer.Length)
                {
                    item.Buffer.AsSpan(0, item.Length).CopyTo(buffer.Span);
                    return new ReceivedDatagram(item.Length, item.Peer);
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(item.Buffer);
            }
        }
    }

    public void Dispose()
    {
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    private async Task PumpAsync()
    {
        var buffer = new byte[65536];
        try
        {
            while (true)
            {
                var r = await _client.ReceiveAsync(buffer);
                var copy = ArrayPool<byte>.Shared.Rent(Math.Max(1, r.Length));
                buffer.AsSpan(0, r.Length).CopyTo(copy);
                // This continuation runs with the lab's context current, and .NET hands a ConfigureAwait(false)
                // reader's continuation to the thread pool when completed from there (docs/lab.md, rule 3): write
                // with no context, so the driver's receive loop goes on inline on the lab's thread.
                var context = SynchronizationContext.Current;
                SynchronizationContext.SetSynchronizationContext(null);
                try
                {
                    _inbox.Writer.TryWrite((copy, r.Length, r.Peer));
                }
                finally
                {
                    SynchronizationContext.SetSynchronizationContext(context);
                }
            }
        }
        catch (Exception e) when (e is ChannelClosedException or OperationCanceledException or ObjectDisposedException)
        {
            _inbox.Writer.TryComplete();
        }
    }
}
