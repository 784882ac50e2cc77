using System.Net;
using NatKit.Net;
using NatKit.Stun.Server;

namespace NatKit.Turn.Server;

/// <summary>How the server reaches one client: the client side of a 5-tuple (RFC 8656 section 2).</summary>
internal abstract class ClientLink
{
    protected ClientLink(IPEndPoint remote, IPEndPoint local)
    {
        Remote = remote;
        Local = local;
    }

    public IPEndPoint Remote { get; }

    public IPEndPoint Local { get; }

    /// <summary>Streams pad ChannelData to four bytes (RFC 8656 section 12.5); datagrams need not.</summary>
    public abstract bool IsStream { get; }

    /// <summary>Sends one STUN message or ChannelData frame. Never throws: a failed send is a lost packet.</summary>
    public abstract ValueTask SendAsync(ReadOnlyMemory<byte> frame);

    /// <summary>A complete, valid STUN message came from this client (a stream's watchdog counts it as the
    /// connection being used; a datagram client has nothing to keep alive).</summary>
    public virtual void MessageReceived()
    {
    }
}

/// <summary>A client over UDP: replies leave through the listening socket the request came in on.</summary>
internal sealed class UdpClientLink(IDatagramSocket socket, IPEndPoint remote)
    : ClientLink(remote, socket.LocalEndPoint)
{
    public override bool IsStream => false;

    /// <summary>The listening socket when it can send without waiting (the real network): replies and relayed
    /// frames then leave on the calling thread.</summary>
    public INonBlockingDatagramSocket? Direct { get; } = socket as INonBlockingDatagramSocket;

    public override ValueTask SendAsync(ReadOnlyMemory<byte> frame)
    {
        if (Direct is not null)
        {
            TrySend(frame.Span);
            return default;
        }

        return SendSlowAsync(frame);
    }

    /// <summary>Sends without waiting (<see cref="Direct"/> must be set); false if the datagram was lost.</summary>
    public bool TrySend(ReadOnlySpan<byte> frame)
    {
        try
        {
            return Direct!.TrySend(frame, Remote);
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
    }

    private async ValueTask SendSlowAsync(ReadOnlyMemory<byte> frame)
    {
        try
        {
            await socket.SendToAsync(frame, Remote);
        }
        catch (Exception e) when (e is NetworkException or ObjectDisposedException or IOException or OperationCanceledException)
        {
            // UDP: a send that fails is a packet lost.
        }
    }
}

/// <summary>A client over TCP or TLS: frames are written whole, one writer at a time. Its
/// <see cref="Watchdog"/> ends a connection that holds the server's memory without using it; a write it
/// cancels (a client that stopped reading) ends the link.</summary>
internal sealed class StreamClientLink(Stream stream, IPEndPoint remote, IPEndPoint local,
    TcpConnectionWatchdog watchdog)
    : ClientLink(remote, local), IDisposable
{
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private volatile bool _closed;

    public override bool IsStream => true;

    public bool Closed => _closed;

    public TcpConnectionWatchdog Watchdog => watchdog;

    public override void MessageReceived() => watchdog.MessageReceived();

    public override async ValueTask SendAsync(ReadOnlyMemory<byte> frame)
    {
        if (_closed)
        {
            return;
        }

        var locked = false;
        try
        {
            await _writeLock.WaitAsync(watchdog.Token);
            locked = true;
            await stream.WriteAsync(frame, watchdog.Token);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or NotSupportedException
                                      or InvalidOperationException or OperationCanceledException)
        {
            _closed = true;
        }
        finally
        {
            if (locked)
            {
                ReleaseWriteLock();
            }
        }
    }

    private void ReleaseWriteLock()
    {
        try
        {
            _writeLock.Release();
        }
        catch (ObjectDisposedException)
        {
            // the connection ended while this write finished
        }
    }

    public void Dispose()
    {
        _closed = true;
        _writeLock.Dispose();
    }
}
