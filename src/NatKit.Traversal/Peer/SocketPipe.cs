using System.Buffers;
using System.Net.Security;
using NatKit.Net;
using NatKit.Traversal.Identity;
using NatKit.Utp;

namespace NatKit.Traversal.Peer;

/// <summary>Which way a pipe was opened.</summary>
public enum PipeKind
{
    /// <summary>A local TCP port of this node, piped to a peer's service (`ssh -L`).</summary>
    Forward,

    /// <summary>A peer's pipe to a service this node exposes (`ssh -R`'s far end).</summary>
    Exposed,
}

/// <summary>One row of the pipe table: a snapshot.</summary>
/// <param name="Id">The pipe's number on this node.</param>
/// <param name="Peer">The node at the other end (TLS-authenticated).</param>
/// <param name="Kind">Forward (opened here) or exposed (opened by the peer).</param>
/// <param name="Service">The service's name.</param>
/// <param name="Path">How the pipe's datagrams travel.</param>
/// <param name="BytesToPeer">Bytes read from the local TCP side and sent to the peer.</param>
/// <param name="BytesFromPeer">Bytes received from the peer and written to the local TCP side.</param>
/// <param name="Age">Since the pipe started carrying bytes.</param>
public sealed record PipeInfo(long Id, NodeId Peer, PipeKind Kind, string Service, PathKind Path, long BytesToPeer,
    long BytesFromPeer, TimeSpan Age);

/// <summary>
/// A TCP connection joined to a TLS stream over uTP, byte for byte in both directions. End-of-stream is carried
/// through as a half-close (a TCP FIN becomes TLS close_notify and a uTP FIN, and back), so a client that shuts down
/// its sending side still reads the whole answer. Each direction copies through one pooled buffer and awaits
/// every write before the next read: a slow reader on either side stalls its writer (uTP's window, TCP's), and the
/// process never holds more than one buffer per direction.
/// </summary>
internal sealed class SocketPipe
{
    private readonly IStreamConnection _tcp;
    private readonly SslStream _tls;
    private readonly UtpStream _utp;
    private readonly TimeProvider _time;
    private readonly long _started;
    private long _toPeer;
    private long _fromPeer;
    private int _closed;

    public SocketPipe(long id, NodeId peer, PipeKind kind, string service, PathKind path, IStreamConnection tcp,
        SslStream tls, UtpStream utp, TimeProvider time)
    {
        Id = id;
        Peer = peer;
        Kind = kind;
        Service = service;
        Path = path;
        _tcp = tcp;
        _tls = tls;
        _utp = utp;
        _time = time;
        _started = time.GetTimestamp();
    }

    public long Id { get; }

    public NodeId Peer { get; }

    public PipeKind Kind { get; }

    public string Service { get; }

    public PathKind Path { get; }

    /// <summary>The uTP connection's transport state (for logs).</summary>
    public UtpStatistics Transport => _utp.Statistics;

    public PipeInfo Snapshot() => new(Id, Peer, Kind, Service, Path, Interlocked.Read(ref _toPeer),
        Interlocked.Read(ref _fromPeer), _time.GetElapsedTime(_started));

    /// <summary>Copies both ways until both have ended (or one failed), then closes everything.</summary>
    public async Task RunAsync(int bufferSize)
    {
        try
        {
            var up = CopyAsync(_tcp.Stream, _tls, toPeer: true, bufferSize);
            var down = CopyAsync(_tls, _tcp.Stream, toPeer: false, bufferSize);
            await Task.WhenAll(up, down);
        }
        finally
        {
            await CloseAsync();
        }
    }

    private async Task CopyAsync(Stream source, Stream destination, bool toPeer, int bufferSize)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(bufferSize);
        try
        {
            while (true)
            {
                var n = await source.ReadAsync(buffer.AsMemory(0, bufferSize));
                if (n == 0)
                {
                    await ShutdownAsync(toPeer);
                    return;
                }

                if (toPeer)
                {
                    // One read's worth is one burst: TLS writes it as 16 KiB records, uTP sends them in full
                    // datagrams and the remainder when the burst ends, not one short datagram per record.
                    _utp.Cork();
                    await destination.WriteAsync(buffer.AsMemory(0, n));
                    _utp.Uncork();
                }
                else
                {
                    await destination.WriteAsync(buffer.AsMemory(0, n));
                }

                Interlocked.Add(ref toPeer ? ref _toPeer : ref _fromPeer, n);
            }
        }
#pragma warning disable CA1031 // a broken side ends the pipe; what broke is the peer's or the service's business
        catch (Exception)
#pragma warning restore CA1031
        {
            await CloseAsync(); // wakes the other direction
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private async Task ShutdownAsync(bool toPeer)
    {
        if (toPeer)
        {
            await _tls.ShutdownAsync(); // close_notify: the peer's read ends, its sending goes on
            _utp.ShutdownWrite();
        }
        else
        {
            _tcp.ShutdownSend();
        }
    }

    /// <summary>Closes both sides now (idempotent); the copies end with the errors this causes.</summary>
    public async ValueTask CloseAsync()
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0)
        {
            return;
        }

        await _tcp.DisposeAsync();
        await _tls.DisposeAsync();
        await _utp.DisposeAsync();
    }
}
