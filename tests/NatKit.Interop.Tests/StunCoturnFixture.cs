using System.Net;
using System.Net.Sockets;
using NatKit.Net;
using NatKit.Stun.Client;
using NatKit.TestSupport;

namespace NatKit.Interop.Tests;

/// <summary>
/// coturn's turnserver as a STUN-only peer on loopback: no configuration file, no TLS/DTLS, no CLI, pid and log
/// in a temporary directory, free ports. RFC 5780 mode listens on 127.0.0.1 and 127.0.0.2 with the alternate
/// port next to the primary. Disposal kills it and removes the directory.
/// </summary>
internal sealed class StunCoturn : IAsyncDisposable
{
    private readonly ExternalProcess _process;
    private readonly string _directory;

    private StunCoturn(ExternalProcess process, string directory, IPEndPoint endPoint)
    {
        _process = process;
        _directory = directory;
        EndPoint = endPoint;
    }

    public IPEndPoint EndPoint { get; }

    public string Log => File.Exists(Path.Combine(_directory, "turn.log"))
        ? File.ReadAllText(Path.Combine(_directory, "turn.log"))
        : _process.Output + _process.Errors;

    public static Task<StunCoturn> StartAsync(bool rfc5780) =>
        StartAsync((_, port) => rfc5780
            ? ["--stun-only", "--no-auth", "-E", "127.0.0.1", "-L", "127.0.0.2", "--alt-listening-port",
                (port + 1).ToString(System.Globalization.CultureInfo.InvariantCulture)]
            : ["--stun-only", "--no-auth", "-E", "127.0.0.1"]);

    /// <summary>turnserver on 127.0.0.1 and a free port, with no config file, CLI, TLS or DTLS, its files in a
    /// temporary directory, plus the mode's own <paramref name="arguments"/> (given that directory and the port).
    /// Ready when it answers a Binding request.</summary>
    public static async Task<StunCoturn> StartAsync(Func<string, int, IEnumerable<string>> arguments)
    {
        var directory = Directory.CreateTempSubdirectory("natkit-coturn-").FullName;
        var port = StunPorts.FreePair();
        var args = new List<string>
        {
            "-n", "--no-cli", "--no-tls", "--no-dtls",
            "-L", "127.0.0.1", "-p", port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--pidfile", Path.Combine(directory, "turn.pid"),
            "-l", Path.Combine(directory, "turn.log"), "--simple-log",
            "--db", Path.Combine(directory, "turndb"),
        };
        args.AddRange(arguments(directory, port));

        var process = ExternalProcess.Start("turnserver", args);
        var server = new StunCoturn(process, directory, new IPEndPoint(IPAddress.Loopback, port));
        try
        {
            // Ready when it answers a Binding request (up to ~6 s), not after a sleep.
            var probe = new StunClient(SystemNetwork.Instance,
                new StunClientOptions { InitialRto = TimeSpan.FromMilliseconds(100), RequestCount = 7, LastWaitMultiplier = 2, Fingerprint = false });
            var answer = await probe.BindingAsync(server.EndPoint);
            if (answer is null)
            {
                throw new InvalidOperationException($"turnserver did not answer on {server.EndPoint}: {server.Log}");
            }

            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _process.DisposeAsync();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

internal static class StunPorts
{
    /// <summary>A UDP and TCP port on 127.0.0.1 and 127.0.0.2 that is free now, with the next one free too.</summary>
    public static int FreePair()
    {
        for (var attempt = 0; attempt < 50; attempt++)
        {
            int port;
            using (var probe = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp))
            {
                probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
                port = ((IPEndPoint)probe.LocalEndPoint!).Port;
            }

            // the servers bind both UDP and TCP on both ports: a port the kernel gave out for UDP can be a TCP
            // connection's local port elsewhere on the machine (the ephemeral ranges are shared)
            if (port < 65000 && IsFree(port) && IsFree(port + 1))
            {
                return port;
            }
        }

        throw new InvalidOperationException("no free port pair");
    }

    private static bool IsFree(int port)
    {
        try
        {
            using var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            s.Bind(new IPEndPoint(IPAddress.Loopback, port));
            using var t = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            t.Bind(new IPEndPoint(IPAddress.Loopback, port));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
