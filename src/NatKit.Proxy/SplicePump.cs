using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace NatKit.Proxy;

/// <summary>
/// Linux fast path for a tunnel direction between two real sockets: splice(2) moves bytes socket -> pipe ->
/// socket inside the kernel, so they are never copied into the process. Readiness comes from .NET's own
/// zero-byte receive; when the destination is full, what sits in the pipe goes through a managed buffer and an
/// asynchronous send, so backpressure never blocks a thread. Any other stream (the lab's) uses the managed copy.
/// </summary>
internal static partial class SplicePump
{
    private const uint SpliceMove = 1;
    private const uint SpliceNonBlock = 2;
    private const int ONonBlock = 0x800;
    private const int OCloExec = 0x80000;
    private const int FSetPipeSize = 1031;
    private const int EAgain = 11;
    private const int PipeSize = 1 << 20;

    /// <summary>The socket under a stream, when it is a real one on Linux.</summary>
    public static Socket? SocketOf(Stream stream) =>
        OperatingSystem.IsLinux() && stream is NetworkStream ns ? ns.Socket : null;

    /// <summary>Moves bytes from <paramref name="source"/> to <paramref name="destination"/> until end of
    /// stream. Returns false (having moved nothing) when no pipe could be made; the caller then copies.</summary>
    public static async Task<bool> PumpAsync(Socket source, Socket destination, Action shutdownSend, Flow flow, bool up,
        Deadline deadline, byte[] buffer)
    {
        var fds = new int[2];
        if (pipe2(fds, ONonBlock | OCloExec) != 0)
        {
            return false;
        }

        _ = fcntl(fds[1], FSetPipeSize, PipeSize); // a bigger pipe moves more per call; the default still works
        try
        {
            var sourceFd = (int)source.Handle;
            var destinationFd = (int)destination.Handle;
            while (true)
            {
                // Try first: in a bulk transfer data is usually waiting, and the wait costs more than the call.
                var n = (long)splice(sourceFd, 0, fds[1], 0, PipeSize, SpliceMove | SpliceNonBlock);
                if (n == 0)
                {
                    shutdownSend();
                    return true;
                }

                if (n < 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    if (errno != EAgain)
                    {
                        throw new IOException($"splice from socket failed: errno {errno}");
                    }

                    deadline.Arm();
                    await source.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, deadline.Token).ConfigureAwait(false);
                    continue;
                }

                deadline.Arm();

                while (n > 0)
                {
                    var m = (long)splice(fds[0], 0, destinationFd, 0, (nuint)n, SpliceMove | SpliceNonBlock);
                    if (m > 0)
                    {
                        n -= m;
                        flow.Add(up, m);
                        continue;
                    }

                    var errno = Marshal.GetLastPInvokeError();
                    if (m < 0 && errno != EAgain)
                    {
                        throw new IOException($"splice to socket failed: errno {errno}");
                    }

                    // The destination is full: take bytes out of the pipe and let the socket wait for room.
                    var r = (long)read(fds[0], buffer, (nuint)Math.Min(n, buffer.Length));
                    if (r <= 0)
                    {
                        throw new IOException($"read from pipe failed: errno {Marshal.GetLastPInvokeError()}");
                    }

                    var sent = 0;
                    while (sent < r)
                    {
                        deadline.Arm();
                        sent += await destination.SendAsync(buffer.AsMemory(sent, (int)r - sent), SocketFlags.None,
                            deadline.Token).ConfigureAwait(false);
                    }

                    n -= r;
                    flow.Add(up, r);
                }
            }
        }
        finally
        {
            _ = close(fds[0]);
            _ = close(fds[1]);
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int pipe2([Out] int[] fds, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint splice(int fdIn, nint offIn, int fdOut, nint offOut, nuint length, uint flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint read(int fd, [Out] byte[] buffer, nuint count);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fcntl(int fd, int command, int argument);

    [LibraryImport("libc")]
    private static partial int close(int fd);
}
