using System.Net.Sockets;
using System.Text;

namespace NatKit.Net;

/// <summary>Answers one command line of a control client (the text after the verb, trimmed) with one document.</summary>
public delegate Task<string> ControlAnswer(string command, CancellationToken cancellationToken);

/// <summary>
/// A running process's control socket: a Unix stream socket that reads one line (a command such as <c>status</c>),
/// writes one answer (a JSON document) and closes. A filesystem socket, not a loopback port, because the process
/// may run inside a network namespace whose loopback nobody else can reach, and because file permissions say who
/// may ask: the directory is created owner-only (0700) when missing and the socket is made 0600.
/// </summary>
public sealed class ControlSocket : IAsyncDisposable
{
    /// <summary>Bytes of a command line at most.</summary>
    public const int MaxCommand = 256;

    private static readonly TimeSpan ClientTimeout = TimeSpan.FromSeconds(5);

    private readonly Socket _listener;
    private readonly ControlAnswer _answer;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;

    private ControlSocket(Socket listener, string path, ControlAnswer answer)
    {
        _listener = listener;
        _answer = answer;
        Path = path;
        _accepting = AcceptLoopAsync();
    }

    /// <summary>The socket's path.</summary>
    public string Path { get; }

    /// <summary>Listens on <paramref name="path"/>: creates its directory (0700) when missing, replaces a stale
    /// socket file left by a crashed run, and makes the socket readable and writable by its owner only.</summary>
    /// <exception cref="IOException">The path is too long for a Unix socket, or cannot be bound.</exception>
    public static ControlSocket Listen(string path, ControlAnswer answer)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(answer);
        if (Encoding.UTF8.GetByteCount(path) > 107)
        {
            throw new IOException($"control socket path {path} is longer than the 107 bytes a Unix socket allows");
        }

        var directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
        if (!Directory.Exists(directory))
        {
            if (OperatingSystem.IsWindows())
            {
                Directory.CreateDirectory(directory);
            }
            else
            {
                Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            }
        }

        if (File.Exists(path))
        {
            File.Delete(path);
        }

        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(path));
            if (!OperatingSystem.IsWindows())
            {
                File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            }

            listener.Listen(8);
        }
        catch (SocketException e)
        {
            listener.Dispose();
            throw new IOException($"control socket {path}: {e.Message}", e);
        }
        catch
        {
            listener.Dispose();
            throw;
        }

        return new ControlSocket(listener, path, answer);
    }

    /// <summary>Sends <paramref name="command"/> to the control socket at <paramref name="path"/> and returns its
    /// answer.</summary>
    /// <exception cref="IOException">No socket there, or nothing listens on it (<paramref name="what"/> names the
    /// process that should, as the message's fix).</exception>
    public static async Task<string> AskAsync(string path, string command, string what,
        CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(command);
        if (!File.Exists(path))
        {
            throw new IOException($"no control socket at {path} (is {what} running?)");
        }

        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellationToken).ConfigureAwait(false);
            await using var stream = new NetworkStream(socket, ownsSocket: false);
            await stream.WriteAsync(Encoding.UTF8.GetBytes(command + "\n"), cancellationToken).ConfigureAwait(false);
            using var reader = new StreamReader(stream, Encoding.UTF8);
            return await reader.ReadToEndAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e)
        {
            throw new IOException($"control socket {path}: {e.Message} (is {what} running?)", e);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_stop.IsCancellationRequested)
        {
            return;
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        try
        {
            await _accepting.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        _stop.Dispose();
        try
        {
            File.Delete(Path);
        }
        catch (IOException)
        {
            // already gone
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            _ = ServeAsync(client);
        }
    }

    private async Task ServeAsync(Socket client)
    {
        using (client)
        {
            try
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
                timeout.CancelAfter(ClientTimeout);
                await using var stream = new NetworkStream(client, ownsSocket: false);
                var line = new byte[MaxCommand];
                var n = await stream.ReadAsync(line, timeout.Token).ConfigureAwait(false);
                var command = Encoding.UTF8.GetString(line, 0, n).Trim();
                var answer = await _answer(command, timeout.Token).ConfigureAwait(false);
                await stream.WriteAsync(Encoding.UTF8.GetBytes(answer), timeout.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
            {
                // a client that went away or dawdled: nothing to answer
            }
        }
    }
}
