using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using NatKit.Lab;
using NatKit.Net;
using NatKit.Scenarios.Bench;
using NatKit.Utp;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>
/// `natkit bench utp`: bulk transfer over uTP between two endpoints on loopback, optionally side by side with
/// libutp (two node processes running tests/interop-node/utp-peer.js) in the same run.
/// </summary>
internal sealed class UtpBenchCommands : IVerbGroup
{
    public string? Parent => "bench";

    public Command Create()
    {
        var command = new Command("utp", "uTP bulk throughput on loopback (NatKit to NatKit; --compare-libutp adds libutp to libutp).");
        var bytes = new Option<long>("--bytes")
        {
            Description = "Bytes to transfer per run.",
            DefaultValueFactory = _ => 200L * 1024 * 1024,
        };
        var runs = new Option<int>("--runs")
        {
            Description = "Runs per implementation; the best and the median are reported.",
            DefaultValueFactory = _ => 3,
        };
        var compare = new Option<bool>("--compare-libutp")
        {
            Description = "Also run libutp to libutp (node and tests/interop-node with npm ci done).",
        };
        var nodePeer = new Option<string?>("--node-peer")
        {
            Description = "Path to utp-peer.js (default: tests/interop-node/utp-peer.js above the current directory).",
        };
        var datagram = new Option<int>("--datagram-size")
        {
            Description = "uTP datagram size, header included.",
            DefaultValueFactory = _ => UtpOptions.Default.MaxDatagramSize,
        };
        command.Options.Add(bytes);
        command.Options.Add(runs);
        command.Options.Add(compare);
        command.Options.Add(nodePeer);
        var lab = new Option<bool>("--lab")
        {
            Description = "Also transfer through an impaired in-memory lab link (virtual time).",
        };
        var labLatency = new Option<int>("--lab-latency")
        {
            Description = "Lab link one-way latency, ms.",
            DefaultValueFactory = _ => 50,
        };
        var labLoss = new Option<double>("--lab-loss")
        {
            Description = "Lab link loss probability per packet, each direction.",
            DefaultValueFactory = _ => 0.01,
        };
        var labBytes = new Option<long>("--lab-bytes")
        {
            Description = "Bytes to transfer through the lab link.",
            DefaultValueFactory = _ => 16L * 1024 * 1024,
        };
        var socketBuffer = new Option<int>("--socket-buffer")
        {
            Description = "Kernel receive and send buffer of each endpoint's UDP socket, bytes (0: the system's default; capped by net.core.rmem_max/wmem_max).",
        };
        command.Options.Add(datagram);
        command.Options.Add(socketBuffer);
        command.Options.Add(lab);
        command.Options.Add(labLatency);
        command.Options.Add(labLoss);
        command.Options.Add(labBytes);
        command.SetAction(async (parse, ct) =>
        {
            var n = parse.GetValue(bytes);
            var r = parse.GetValue(runs);
            if (n <= 0 || r <= 0)
            {
                throw new CliException("--bytes and --runs must be positive");
            }

            var buffers = parse.GetValue(socketBuffer);
            if (buffers < 0)
            {
                throw new CliException($"--socket-buffer {buffers}: must be 0 (the system's default) or more.");
            }

            var options = new UtpOptions { MaxDatagramSize = parse.GetValue(datagram) };
            try
            {
                options.Validate();
            }
            catch (ArgumentException e)
            {
                throw new CliException(e.Message);
            }

            string? script = null;
            if (parse.GetValue(compare))
            {
                script = parse.GetValue(nodePeer) ?? FindNodePeer() ??
                         throw new CliException("tests/interop-node/utp-peer.js not found: pass --node-peer");
                if (!Directory.Exists(Path.Combine(Path.GetDirectoryName(script)!, "node_modules", "utp-native")))
                {
                    throw new CliException("utp-native is not installed: run npm ci in " + Path.GetDirectoryName(script));
                }
            }

            var table = new Table().AddColumns("implementation", "bytes", "best Mbit/s", "median Mbit/s", "runs");
            var natkit = new List<double>();
            var libutp = new List<double>();
            for (var i = 0; i < r; i++)
            {
                natkit.Add(await NatKitLoopbackAsync(n, options, ct, buffers));
                if (script is not null)
                {
                    libutp.Add(await LibutpLoopbackAsync(script, n, ct));
                }
            }

            AddRow(table, "NatKit -> NatKit", n, natkit);
            if (script is not null)
            {
                AddRow(table, "libutp -> libutp", n, libutp);
            }

            AnsiConsole.Write(table);
            var st = LastLoopbackStatistics;
            AnsiConsole.MarkupLineInterpolated(
                $"[grey]NatKit last run: {st.PacketsSent} packets, {st.Retransmissions} retransmitted ({st.FastRetransmissions} fast), {st.Timeouts} timeouts, rtt {st.SmoothedRtt.TotalMilliseconds:0.###} ms, cwnd {st.CongestionWindow} B[/]");
            if (parse.GetValue(lab))
            {
                var latency = TimeSpan.FromMilliseconds(parse.GetValue(labLatency));
                var loss = parse.GetValue(labLoss);
                if (latency < TimeSpan.Zero || loss is < 0 or > 1)
                {
                    throw new CliException("--lab-latency must be >= 0 and --lab-loss in 0..1");
                }

                var result = LabTransfer(parse.GetValue(labBytes), latency, loss, options);
                var labTable = new Table().AddColumns("lab link", "bytes", "virtual s", "Mbit/s (virtual)",
                    "retransmits", "timeouts", "wall s");
                labTable.AddRow($"{latency.TotalMilliseconds:0} ms one way, {loss:P1} loss",
                    result.Bytes.ToString("N0", CultureInfo.InvariantCulture),
                    result.Virtual.TotalSeconds.ToString("0.00", CultureInfo.InvariantCulture),
                    (result.Bytes * 8 / result.Virtual.TotalSeconds / 1e6).ToString("0.0", CultureInfo.InvariantCulture),
                    result.Retransmissions.ToString(CultureInfo.InvariantCulture),
                    result.Timeouts.ToString(CultureInfo.InvariantCulture),
                    result.Wall.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture));
                AnsiConsole.Write(labTable);
            }

            if (script is not null)
            {
                AnsiConsole.MarkupLineInterpolated(
                    $"NatKit / libutp (median): [bold]{BenchFigures.Median(natkit) / BenchFigures.Median(libutp):0.00}x[/]");
            }

            AnsiConsole.MarkupLineInterpolated(
                $"[grey]load average: {BenchFigures.LoadAverage()} on {Environment.ProcessorCount} cores[/]");
            return 0;
        });
        return command;
    }

    private static void AddRow(Table table, string name, long bytes, List<double> mbits) =>
        table.AddRow(name, bytes.ToString("N0", CultureInfo.InvariantCulture),
            mbits.Max().ToString("0", CultureInfo.InvariantCulture),
            BenchFigures.Median(mbits).ToString("0", CultureInfo.InvariantCulture),
            mbits.Count.ToString(CultureInfo.InvariantCulture));

    internal static UtpStatistics LastLoopbackStatistics { get; private set; }

    /// <summary>One bulk transfer between two uTP endpoints on 127.0.0.1; Mbit/s from the first byte received to
    /// the last (the same span the node peer measures).</summary>
    private static async Task<IDatagramSocket> BindAsync(IPEndPoint local, int socketBuffer, CancellationToken ct)
    {
        var socket = await SystemNetwork.Instance.BindUdpAsync(local, ct);
        if (socketBuffer > 0)
        {
            (socket as ISocketBuffers)?.TrySetBufferSizes(socketBuffer, socketBuffer);
        }

        return socket;
    }

    internal static async Task<double> NatKitLoopbackAsync(long bytes, UtpOptions options, CancellationToken ct,
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
    private static (long Bytes, TimeSpan Virtual, TimeSpan Wall, long Retransmissions, long Timeouts) LabTransfer(
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
        return (bytes, elapsed, TimeProvider.System.GetElapsedTime(wall), retransmits, timeouts);

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

    /// <summary>libutp to libutp: two node processes, a listener that receives and a connector that sends.</summary>
    private static async Task<double> LibutpLoopbackAsync(string script, long bytes, CancellationToken ct)
    {
        using var listener = StartNode(script, "--mode", "listen", "--port", "0", "--close", "after",
            "--timeout-ms", "600000", "--bench", "1");
        try
        {
            var first = await listener.StandardOutput.ReadLineAsync(ct) ?? "";
            if (!first.StartsWith("listening ", StringComparison.Ordinal))
            {
                throw new InvalidDataException("libutp listener said: " + first);
            }

            using var connector = StartNode(script, "--mode", "connect", "--port", first["listening ".Length..],
                "--send", bytes.ToString(CultureInfo.InvariantCulture), "--close", "first", "--timeout-ms", "600000",
                "--bench", "1");
            try
            {
                var line = await listener.StandardOutput.ReadLineAsync(ct) ?? "";
                var parts = line.Split(' ');
                if (parts.Length != 4 || parts[0] != "received" ||
                    long.Parse(parts[1], CultureInfo.InvariantCulture) != bytes)
                {
                    throw new InvalidDataException("libutp listener said: " + line);
                }

                var seconds = double.Parse(parts[3], CultureInfo.InvariantCulture);
                await connector.WaitForExitAsync(ct);
                return bytes * 8 / seconds / 1e6;
            }
            finally
            {
                Kill(connector);
            }
        }
        finally
        {
            Kill(listener);
        }
    }

    private static Process StartNode(string script, params string[] args)
    {
        var info = new ProcessStartInfo("node")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = Path.GetDirectoryName(script)!,
        };
        info.ArgumentList.Add(script);
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        try
        {
            return Process.Start(info) ?? throw new CliException("could not start node");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new CliException("could not start node: " + e.Message);
        }
    }

    private static void Kill(Process p)
    {
        try
        {
            if (!p.HasExited)
            {
                p.Kill(entireProcessTree: true);
            }
        }
        catch (InvalidOperationException)
        {
            // already gone
        }
    }

    private static string? FindNodePeer()
    {
        for (var dir = new DirectoryInfo(Environment.CurrentDirectory); dir is not null; dir = dir.Parent)
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
