using System.Globalization;
using System.Net;
using System.Net.Sockets;
using NatKit.Linux;

namespace NatKit.Bench;

/// <summary>
/// Debian's OpenSSH as the peer benchmark's `ssh -L` contender, all on loopback: an sshd started here on a free
/// 127.0.0.1 port with a throwaway host key, an authorized key and its own config in a private temporary directory
/// (forwarding allowed only to the one target), and `ssh -N -L` clients that log in with that key. Disposing stops
/// every process it started and removes the directory (and <c>/run/sshd</c> when it made it).
/// </summary>
public sealed class SshForward : IAsyncDisposable
{
    private const string PrivilegeSeparationDirectory = "/run/sshd";

    private readonly string _dir;
    private readonly NamespaceProcess _sshd;
    private readonly string _ssh;
    private readonly bool _madeRunDirectory;
    private readonly List<NamespaceProcess> _clients = [];

    private SshForward(string dir, NamespaceProcess sshd, string ssh, int port, IPEndPoint target, string cipher,
        string version, bool madeRunDirectory)
    {
        _dir = dir;
        _sshd = sshd;
        _ssh = ssh;
        Port = port;
        Target = target;
        Cipher = cipher;
        Version = version;
        _madeRunDirectory = madeRunDirectory;
    }

    /// <summary>sshd's port on 127.0.0.1.</summary>
    public int Port { get; }

    /// <summary>Where the forwards lead.</summary>
    public IPEndPoint Target { get; }

    /// <summary>The cipher the clients ask for.</summary>
    public string Cipher { get; }

    /// <summary>`ssh -V`.</summary>
    public string Version { get; }

    /// <summary>Why the contender cannot run here (a program missing), or null.</summary>
    public static string? WhyMissing()
    {
        foreach (var p in new[] { "sshd", "ssh", "ssh-keygen" })
        {
            if (SystemCommand.Which(p) is null)
            {
                return $"{p} is not installed (apt-get install openssh-server openssh-client)";
            }
        }

        return null;
    }

    /// <summary>Starts sshd on loopback with forwarding allowed to <paramref name="target"/> only.</summary>
    /// <exception cref="IOException">A program is missing or sshd did not come up (its log is quoted).</exception>
    public static async Task<SshForward> StartAsync(IPEndPoint target, string cipher,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(target);
        if (WhyMissing() is { } missing)
        {
            throw new IOException(missing);
        }

        var dir = Directory.CreateTempSubdirectory("natkit-bench-ssh-").FullName; // 0700 (mkdtemp)
        var madeRun = false;
        NamespaceProcess? sshd = null;
        try
        {
            var keygen = SystemCommand.Which("ssh-keygen")!;
            await SystemCommand.RunAsync(keygen, ["-q", "-t", "ed25519", "-N", "", "-C", "natkit-bench-host", "-f", Path.Combine(dir, "host")], cancellationToken).ConfigureAwait(false);
            await SystemCommand.RunAsync(keygen, ["-q", "-t", "ed25519", "-N", "", "-C", "natkit-bench-client", "-f", Path.Combine(dir, "client")], cancellationToken).ConfigureAwait(false);
            File.Copy(Path.Combine(dir, "client.pub"), Path.Combine(dir, "authorized_keys"));
            var port = FreeTcpPort();
            await File.WriteAllTextAsync(Path.Combine(dir, "sshd_config"), string.Join('\n',
                $"Port {port}",
                "ListenAddress 127.0.0.1",
                $"HostKey {dir}/host",
                $"AuthorizedKeysFile {dir}/authorized_keys",
                "PidFile none",
                "StrictModes no",
                "UsePAM no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "AllowTcpForwarding local",
                string.Create(CultureInfo.InvariantCulture, $"PermitOpen {target.Address}:{target.Port}"),
                "X11Forwarding no",
                "PrintMotd no",
                "LogLevel INFO") + "\n", cancellationToken).ConfigureAwait(false);

            // sshd run as root wants its privilege separation directory (the package's service makes it).
            if (Environment.UserName == "root" && !Directory.Exists(PrivilegeSeparationDirectory))
            {
                Directory.CreateDirectory(PrivilegeSeparationDirectory);
                madeRun = true;
            }

            sshd = NamespaceProcess.StartOnHost(SystemCommand.Which("sshd")!, ["-D", "-e", "-f", Path.Combine(dir, "sshd_config")]);
            await WaitForAsync(() => sshd.Errors.Contains("Server listening on 127.0.0.1", StringComparison.Ordinal),
                () => sshd.HasExited, TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false);
            if (!sshd.Errors.Contains("Server listening", StringComparison.Ordinal))
            {
                throw new IOException($"sshd did not start: {sshd.Errors.Trim()}");
            }

            var (_, _, versionText) = await SystemCommand.TryRunAsync(SystemCommand.Which("ssh")!, ["-V"], cancellationToken)
                .ConfigureAwait(false);
            return new SshForward(dir, sshd, SystemCommand.Which("ssh")!, port, target, cipher, versionText.Trim(), madeRun);
        }
        catch
        {
            if (sshd is not null)
            {
                await sshd.DisposeAsync().ConfigureAwait(false);
            }

            Cleanup(dir, madeRun);
            throw;
        }
    }

    /// <summary>Starts `ssh -N -L 127.0.0.1:PORT:target` and returns once a connection to the local port is
    /// accepted (the forward is up only after the login).</summary>
    public async Task<(NamespaceProcess Client, IPEndPoint Local)> ForwardAsync(CancellationToken cancellationToken = default)
    {
        var local = new IPEndPoint(IPAddress.Loopback, FreeTcpPort());
        var client = NamespaceProcess.StartOnHost(_ssh,
        [
            "-N", "-T", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "ExitOnForwardFailure=yes", "-o", "LogLevel=ERROR",
            "-o", "IdentitiesOnly=yes", "-i", Path.Combine(_dir, "client"), "-c", Cipher,
            "-p", Port.ToString(CultureInfo.InvariantCulture),
            "-L", string.Create(CultureInfo.InvariantCulture, $"127.0.0.1:{local.Port}:{Target.Address}:{Target.Port}"),
            $"{Environment.UserName}@127.0.0.1",
        ]);
        lock (_clients)
        {
            _clients.Add(client);
        }

        return (client, local);
    }

    /// <summary>Stops one client (its forward ends).</summary>
    public async Task StopAsync(NamespaceProcess client)
    {
        ArgumentNullException.ThrowIfNull(client);
        lock (_clients)
        {
            _clients.Remove(client);
        }

        await client.DisposeAsync().ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        NamespaceProcess[] clients;
        lock (_clients)
        {
            clients = [.. _clients];
            _clients.Clear();
        }

        foreach (var c in clients)
        {
            await c.DisposeAsync().ConfigureAwait(false);
        }

        await _sshd.DisposeAsync().ConfigureAwait(false);
        Cleanup(_dir, _madeRunDirectory);
    }

    private static void Cleanup(string dir, bool madeRunDirectory)
    {
        try
        {
            Directory.Delete(dir, recursive: true);
        }
        catch (IOException)
        {
        }

        if (madeRunDirectory)
        {
            try
            {
                Directory.Delete(PrivilegeSeparationDirectory);
            }
            catch (IOException)
            {
                // sshd's service made something in it meanwhile: it is theirs now
            }
        }
    }

    /// <summary>A TCP port on 127.0.0.1 that was free a moment ago (for programs that take a port, not a socket).</summary>
    private static int FreeTcpPort()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }

    private static async Task WaitForAsync(Func<bool> done, Func<bool> failed, TimeSpan limit,
        CancellationToken cancellationToken)
    {
        var started = TimeProvider.System.GetTimestamp();
        while (!done() && !failed() && TimeProvider.System.GetElapsedTime(started) < limit)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(20), cancellationToken).ConfigureAwait(false);
        }
    }
}
