using System.Globalization;
using System.Net;
using NatKit.Lab;
using NatKit.Net;
using NatKit.Utp;

namespace NatKit.Bench.Utp;

/// <summary>One bulk transfer through an impaired lab link: bytes, virtual and wall time, the sender's retransmits
/// and timeouts.</summary>
public readonly record struct UtpLabTransfer(long Bytes, TimeSpan Virtual, TimeSpan Wall, long Retransmissions, long Timeouts);

/// <summary>`natkit bench utp`'s harness: bulk transfers over uTP between two endpoints on loopback, through an
/// impaired in-memory lab link, and libutp to libutp (two node processes running tests/interop-node/utp-peer.js).</summary>
public static class UtpBenchmark
{
    private static async Task<IDatagramSocket> BindAsync(IPEndPoint local, int socketBuffer, CancellationToken ct)
    {
        var socket = await SystemNetwork.Instance.BindUdpAsync(local, ct);
        if (socketBuffer > 0)
        {
            (socket as ISocketBuffers)?.TrySetBufferSizes(socketBuffer, socketBuffer);
        }

        return socket;
    }

    /// <summary>The sender's statistics of the last <see cref="NatKitLoopbackAsync"/> run.</summary>
    public static UtpStatistics LastLoopbackStatistics { get; private set; }

    /// <summary>One bulk transfer between two uTP endpoints on 127.0.0.1; Mbit/s from the first byte received to
    /// the last (the same span the node peer measures).</summary>
    /// <param name="bytes">How many bytes to send.</param>
    /// <param name="options">Both endpoints' uTP options.</param>
    /// <param name="ct">Cancels the transfer.</param>
    /// <param name="socketBuffer">Each UDP socket's kernel receive and send buffer in bytes; 0 keeps the system's
    /// default (the kernel caps it at net.core.rmem_max / wmem_max).</param>
    public static async Task<double> NatKitLoopbackAsync(long bytes, UtpOptions options, CancellationToken ct,
        int socketBuffer = 0)
    {
        var loopback = new IPEndPoint(IPAddress.Loopback, 0);
        await using var server = new UtpSocket(await BindAsync(loopback, socketBuffer, ct), TimeProvider.System, options);
        await using var client = new UtpSocket(await BindAsync(loopback, socketBuffer, ct), TimeProvider.System, options);
        var accept = server.AcceptAsync(ct);
        await using var sender = await client.ConnectAsync(server.LocalEndPoint, ct);
        await using var receiver = await accept;

        var time = TimeProvider.System;
        var writing = Task.Run(async () =>
        {
            var chunk = new byte[256 * 1024];
            Random.Shared.NextBytes(chunk);
            for (var left = bytes; left > 0; left -= chunk.Length)
            {
                await sender.WriteAsync(chunk.AsMemory(0, (int)Math.Min(chunk.Length, left)), ct);
            }

            sender.ShutdownWrite();
        }, ct);

        var buffer = new byte[256 * 1024];
        long received = 0;
        long start = 0;
        while (true)
        {
            var n = await receiver.ReadAsync(buffer, ct);
            if (n == 0)
            {
                break;
            }

            if (received == 0)
            {
                start = time.GetTimestamp();
            }

            received += n;
        }

        var seconds = time.GetElapsedTime(start).TotalSeconds;
        await writing;
        LastLoopbackStatistics = sender.Statistics;
        if (received != bytes)
        {
            throw new InvalidDataException($"uTP bench received {received} of {bytes} bytes");
        }

        return bytes * 8 / seconds / 1e6;
    }

    /// <summary>One bulk transfer inside the lab: alice's link has the latency and loss (each direction), bob's is
    /// perfect; throughput is in virtual time, from the first byte received to the last.</summary>
    public static UtpLabTransfer LabTransfer(
        long bytes, TimeSpan latency, double loss, UtpOptions options)
    {
        var wall = TimeProvider.System.GetTimestamp();
        var lab = new VirtualNetwork(seed: 1);
        var internet = lab.AddSegment("internet");
        var alice = lab.AddHost("alice", internet, "198.51.100.10");
        var bob = lab.AddHost("bob", internet, "203.0.113.20");
        alice.Link = new LinkProfile { Latency = latency, Loss = loss };
        var labOptions = options with { Random = lab.Random };
        var (elapsed, retransmits, timeouts) = lab.Run(async () =>
        {
            await using var a = await UtpSocket.BindAsync(alice, new IPEndPoint(alice.Address, 0), labOptions);
            await using var b = await UtpSocket.BindAsync(bob, new IPEndPoint(bob.Address, 6881), labOptions);
            var accept = b.AcceptAsync();
            await using var sender = await a.ConnectAsync(new IPEndPoint(bob.Address, 6881));
            await using var receiver = await accept;
            var writing = WriteAll(sender, bytes);
            var buffer = new byte[256 * 1024];
            long received = 0;
            var start = TimeSpan.Zero;
            while (true)
            {
                var n = await receiver.ReadAsync(buffer);
                if (n == 0)
                {
                    break;
                }

                if (received == 0)
                {
                    start = lab.Now;
                }

                received += n;
            }

            await writing;
            if (received != bytes)
            {
                throw new InvalidDataException($"lab transfer received {received} of {bytes} bytes");
            }

            var stats = sender.Statistics;
            return (lab.Now - start, stats.Retransmissions, stats.Timeouts);
        }, new NatKit.Lab.Scheduling.LabRunOptions { MaxVirtualTime = TimeSpan.FromDays(1), MaxSteps = long.MaxValue });
        return new UtpLabTransfer(bytes, elapsed, TimeProvider.System.GetElapsedTime(wall), retransmits, timeouts);

        static async Task WriteAll(UtpStream s, long total)
        {
            var chunk = new byte[64 * 1024];
            for (var left = total; left > 0; left -= chunk.Length)
            {
                await s.WriteAsync(chunk.AsMemory(0, (int)Math.Min(chunk.Length, left)));
            }

            s.ShutdownWrite();
        }
    }

    /// <summary>libutp to libutp: two node processes, a listener that receives and a connector that sends; Mbit/s
    /// as the listener measures it.</summary>
    /// <exception cref="InvalidDataException">A peer said something else than the harness expects.</exception>
    public static async Task<double> LibutpLoopbackAsync(string script, long bytes, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrEmpty(script);
        var options = new ChildProcessOptions { WorkingDirectory = Path.GetDirectoryName(script)!, Name = "utp-peer.js" };
        var listener = ChildProcess.Start("node", [script, "--mode", "listen", "--port", "0", "--close", "after",
            "--timeout-ms", "600000", "--bench", "1"], options);
        await using (listener.ConfigureAwait(false))
        {
            var first = await listener.WaitForOutputAsync("listening ", ct).ConfigureAwait(false);
            var connector = ChildProcess.Start("node", [script, "--mode", "connect", "--port", first["listening ".Length..].Trim(),
                "--send", bytes.ToString(CultureInfo.InvariantCulture), "--close", "first", "--timeout-ms", "600000",
                "--bench", "1"], options);
            await using (connector.ConfigureAwait(false))
            {
                var line = await listener.WaitForOutputAsync("received ", ct).ConfigureAwait(false);
                return ParseReceived(line, bytes);
            }
        }
    }

    /// <summary>The listener's "received BYTES SHA256 SECONDS" line, as Mbit/s.</summary>
    /// <exception cref="InvalidDataException">Not that line, or another byte count.</exception>
    internal static double ParseReceived(string line, long bytes)
    {
        var parts = line.Trim().Split(' ');
        if (parts.Length != 4 || parts[0] != "received" ||
            !long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var got) || got != bytes ||
            !double.TryParse(parts[3], NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) || seconds <= 0)
        {
            throw new InvalidDataException("libutp listener said: " + line);
        }

        return bytes * 8 / seconds / 1e6;
    }

    /// <summary>tests/interop-node/utp-peer.js in <paramref name="start"/> or a directory above it; null if none.</summary>
    public static string? FindNodePeer(string start)
    {
        for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "tests", "interop-node", "utp-peer.js");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }
}
