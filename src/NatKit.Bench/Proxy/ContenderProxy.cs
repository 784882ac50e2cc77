using System.Globalization;
using System.Net;
using NatKit.Net;

namespace NatKit.Bench.Proxy;

/// <summary>
/// A contender proxy in the foreground of its own process (tinyproxy, squid, natkit itself, or the C splice
/// reference), started by <see cref="ChildProcess"/> with its configuration, logs, pid files or binary in a temporary
/// directory of its own, listening on a free port of 127.0.0.1 only (checked in /proc once it runs). Disposal, a
/// failed start, Ctrl-C and SIGTERM kill its process tree and remove the directory.
/// </summary>
public sealed class ContenderProxy : IAsyncDisposable
{
    private readonly ChildProcess _process;

    private ContenderProxy(string name, ChildProcess process, int port, string version)
    {
        Name = name;
        _process = process;
        Port = port;
        Version = version;
    }

    /// <summary>tinyproxy, squid, natkit or splice-c.</summary>
    public string Name { get; }

    /// <summary>Its port on 127.0.0.1.</summary>
    public int Port { get; }

    /// <summary>What it says its version is (its first line of `-v`), or natkit's assembly version.</summary>
    public string Version { get; }

    /// <summary>tinyproxy, or null when it is not installed.</summary>
    public static Task<ContenderProxy?> StartTinyproxyAsync(int connectPort, CancellationToken ct) =>
        StartInstalledAsync("tinyproxy", ct, (dir, port) =>
        {
            var user = Environment.UserName == "root" ? "User nobody\nGroup nogroup\n" : "";
            return ($"{user}Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 1000\nAllow 127.0.0.1\n" +
                    $"LogLevel Critical\nConnectPort {connectPort}\nDisableViaHeader No\n", ["-d", "-c"]);
        });

    /// <summary>squid (no disk cache, nothing cached, no ICP/HTCP/SNMP, DNS only to 127.0.0.1), or null when
    /// it is not installed.</summary>
    public static Task<ContenderProxy?> StartSquidAsync(int connectPort, CancellationToken ct) =>
        StartInstalledAsync("squid", ct, (dir, port) => (string.Join('\n',
            $"http_port 127.0.0.1:{port}",
            $"pid_filename {dir}/squid.pid",
            $"cache_log {dir}/cache.log",
            $"coredump_dir {dir}",
            "access_log none",
            "cache_store_log none",
            "cache deny all",
            "cache_mem 0 MB",
            "acl loopback src 127.0.0.1/32",
            $"acl sink port {connectPort}",
            "acl CONNECT method CONNECT",
            "http_access deny CONNECT !sink",
            "http_access allow loopback",
            "http_access deny all",
            "icp_port 0",
            "htcp_port 0",
            "snmp_port 0",
            "udp_incoming_address 127.0.0.1",
            "udp_outgoing_address 127.0.0.1",
            "dns_nameservers 127.0.0.1",
            "pinger_enable off",
            "netdb_filename none",
            "shutdown_lifetime 0 seconds",
            "visible_hostname natkit-bench",
            "client_persistent_connections on",
            "server_persistent_connections on",
            "max_filedescriptors 4096") + "\n", ["-N", "-f"]));

    /// <summary>natkit's own proxy as its own process (`natkit proxy serve`), started and checked like the peers, so
    /// no contender shares a process with the load generator. <paramref name="natkit"/> is how to run natkit (the
    /// apphost, or dotnet and natkit.dll).</summary>
    public static Task<ContenderProxy> StartNatkitAsync(IReadOnlyList<string> natkit, string version, int connectPort,
        string? congestionControl, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(natkit);
        return StartAsync("natkit", version, ct, (_, port) => Task.FromResult(new Launch(natkit[0],
        [
            .. natkit.Skip(1), "proxy", "serve", "--listen", $"127.0.0.1:{port}", "--allow", "127.0.0.1/32",
            "--connect-ports", connectPort.ToString(CultureInfo.InvariantCulture), "--allow-loopback-destinations",
            "--quiet", .. congestionControl is null ? Array.Empty<string>() : ["--congestion-control", congestionControl],
        ])));
    }

    /// <summary>The reference for CONNECT throughput: Resources/splice-relay.c (two blocking splice(2) threads per
    /// tunnel, no HTTP beyond answering the CONNECT, relaying to <paramref name="sinkPort"/> whatever the CONNECT
    /// names), compiled with the machine's C compiler into the contender's directory.</summary>
    /// <exception cref="IOException">No C compiler, or the source does not compile.</exception>
    public static Task<ContenderProxy> StartSpliceReferenceAsync(int sinkPort, string? congestionControl, CancellationToken ct)
    {
        var compiler = ChildProcess.Which("cc") ?? ChildProcess.Which("gcc") ??
            throw new IOException("the splice reference needs a C compiler (apt-get install gcc)");
        return StartAsync("splice-c", "splice-relay.c", ct, async (dir, port) =>
        {
            var source = Path.Combine(dir, "splice-relay.c");
            var resource = typeof(ContenderProxy).Assembly.GetManifestResourceStream("splice-relay.c")!;
            await using (resource.ConfigureAwait(false))
            {
                var file = File.Create(source);
                await using (file.ConfigureAwait(false))
                {
                    await resource.CopyToAsync(file, ct).ConfigureAwait(false);
                }
            }

            var binary = Path.Combine(dir, "splice-relay");
            var built = await ChildProcess.RunAsync(compiler, ["-O2", "-pthread", "-o", binary, source],
                TimeSpan.FromMinutes(1), ct).ConfigureAwait(false);
            if (built.ExitCode != 0)
            {
                throw new IOException($"the splice reference did not compile: {(built.Output + built.Errors).Trim()}");
            }

            // a probe connection is accepted and closed without a CONNECT head: that ends only its own tunnel
            return new Launch(binary, [port.ToString(CultureInfo.InvariantCulture),
                sinkPort.ToString(CultureInfo.InvariantCulture), .. congestionControl is null ? Array.Empty<string>() : [congestionControl]]);
        });
    }

    /// <summary>What to run in a contender's directory: a program, its arguments, and the configuration file
    /// (written into the directory and passed last) when it takes one.</summary>
    private sealed record Launch(string Path, string[] Arguments, string? Config = null);

    private static async Task<ContenderProxy?> StartInstalledAsync(string name, CancellationToken ct,
        Func<string, int, (string Config, string[] Arguments)> configure) =>
        ChildProcess.Which(name) is { } path
            ? await StartAsync(name, await VersionAsync(path, ct).ConfigureAwait(false), ct, (dir, port) =>
            {
                var (config, arguments) = configure(dir, port);
                return Task.FromResult(new Launch(path, arguments, config));
            }).ConfigureAwait(false)
            : null;

    /// <summary>Runs what <paramref name="launch"/> gives for the contender's directory (its TMPDIR) and a free
    /// loopback port, and waits for it to listen there.</summary>
    private static async Task<ContenderProxy> StartAsync(string name, string version, CancellationToken ct,
        Func<string, int, Task<Launch>> launch)
    {
        int port;
        var probe = await SystemNetwork.Instance.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0), 1, ct).ConfigureAwait(false);
        await using (probe.ConfigureAwait(false))
        {
            port = probe.LocalEndPoint.Port;
        }

        // the directory is made first (the configuration names it), then handed to the process as its TMPDIR, and
        // goes with it; mode 1777: a root-started proxy drops to its own user (nobody, proxy) and writes its logs here
        var dir = Directory.CreateTempSubdirectory($"natkit-{name}-").FullName;
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(dir, (UnixFileMode)0x3FF);
        }

        ChildProcess? process = null;
        var ready = false;
        try
        {
            var (path, arguments, config) = await launch(dir, port).ConfigureAwait(false);
            if (config is not null)
            {
                var conf = Path.Combine(dir, name + ".conf");
                await File.WriteAllTextAsync(conf, config, ct).ConfigureAwait(false);
                arguments = [.. arguments, conf];
            }

            process = ChildProcess.Start(path, arguments,
                new ChildProcessOptions { Name = name, StopWithThisProcess = true, TempDirectory = dir });
            try
            {
                await process.WaitForPortAsync(new IPEndPoint(IPAddress.Loopback, port), ct).ConfigureAwait(false);
            }
            catch (IOException e)
            {
                var log = Path.Combine(dir, "cache.log");
                throw new IOException($"{name} did not start: {e.Message}" +
                    (File.Exists(log) ? " " + string.Join(" | ", File.ReadLines(log).TakeLast(3)) : ""), e);
            }

            LoopbackCheck.EnsureLoopbackOnly(name, process.Id);
            ready = true;
            return new ContenderProxy(name, process, port, version);
        }
        finally
        {
            if (!ready)
            {
                if (process is not null)
                {
                    await process.DisposeAsync().ConfigureAwait(false); // kills the tree and removes the directory
                }
                else if (Directory.Exists(dir))
                {
                    Directory.Delete(dir, recursive: true);
                }
            }
        }
    }

    private static async Task<string> VersionAsync(string path, CancellationToken ct)
    {
        var r = await ChildProcess.RunAsync(path, ["-v"], TimeSpan.FromSeconds(10), ct).ConfigureAwait(false);
        return (r.Output + r.Errors).Split('\n', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault()?.Trim() ?? "";
    }

    /// <summary>Kills its process tree and removes its directory.</summary>
    public ValueTask DisposeAsync() => _process.DisposeAsync();
}
