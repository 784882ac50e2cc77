using System.Security.Cryptography;
using NatKit.Linux.Interop;

namespace NatKit.Linux;

/// <summary>
/// A named Linux network namespace (`ip netns add`) that this object created and removes when disposed. Every
/// name starts with <see cref="Prefix"/>, so <see cref="RemoveAllAsync"/> can clean up after a crash without
/// touching anyone else's namespaces. A fresh namespace has only a down loopback and no route anywhere.
/// </summary>
public sealed class NetworkNamespace : IAsyncDisposable
{
    /// <summary>Every namespace NatKit creates starts with this.</summary>
    public const string Prefix = "nk-";

    private int _disposed;

    private NetworkNamespace(string name)
    {
        Name = name;
    }

    public string Name { get; }

    /// <summary>A short random tag for one run ("nk-" + tag + "-" + role keeps names unique across parallel runs).</summary>
    public static string NewRunTag() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3));

    /// <summary>Creates the namespace <c>nk-...</c> and brings its loopback up.</summary>
    public static async Task<NetworkNamespace> CreateAsync(string name, CancellationToken cancellationToken = default)
    {
        if (!name.StartsWith(Prefix, StringComparison.Ordinal))
        {
            throw new ArgumentException($"namespace name '{name}' must start with '{Prefix}'", nameof(name));
        }

        // Not cancelled half-way: a cancelled wait could leave a namespace `ip` made that no one would remove. The
        // cancellation is honoured right after, with the namespace in hand to remove.
        await SystemCommand.RunAsync("ip", ["netns", "add", name], CancellationToken.None).ConfigureAwait(false);
        var ns = new NetworkNamespace(name);
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            await ns.IpAsync(["link", "set", "lo", "up"], cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await ns.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return ns;
    }

    /// <summary>Runs <c>ip -n NAME ARGS</c>.</summary>
    public Task<string> IpAsync(IEnumerable<string> arguments, CancellationToken cancellationToken = default) =>
        SystemCommand.RunAsync("ip", ["-n", Name, .. arguments], cancellationToken);

    /// <summary>Runs <c>tc -n NAME ARGS</c> (queueing disciplines and filters on the namespace's devices).</summary>
    public Task<string> TcAsync(IEnumerable<string> arguments, CancellationToken cancellationToken = default) =>
        SystemCommand.RunAsync("tc", ["-n", Name, .. arguments], cancellationToken);

    /// <summary>Runs a program inside the namespace (<c>ip netns exec</c>) and returns its output; throws on failure.</summary>
    public Task<string> ExecAsync(string program, IEnumerable<string> arguments,
        CancellationToken cancellationToken = default, TimeSpan? timeout = null, string? standardInput = null) =>
        SystemCommand.RunAsync("ip", ["netns", "exec", Name, program, .. arguments], cancellationToken, timeout,
            standardInput);

    /// <summary>Runs a program inside the namespace and returns exit code and output without throwing.</summary>
    public Task<(int ExitCode, string Output, string Errors)> TryExecAsync(string program,
        IEnumerable<string> arguments, CancellationToken cancellationToken = default, TimeSpan? timeout = null) =>
        SystemCommand.TryRunAsync("ip", ["netns", "exec", Name, program, .. arguments], cancellationToken, timeout);

    /// <summary>Sets a sysctl inside the namespace, e.g. ("net.ipv4.ip_forward", "1").</summary>
    public Task SysctlAsync(string key, string value, CancellationToken cancellationToken = default) =>
        ExecAsync("sysctl", ["-q", "-w", $"{key}={value}"], cancellationToken);

    /// <summary>Kills what still runs inside the namespace, then deletes it.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            await RemoveAsync(Name).ConfigureAwait(false);
        }
    }

    /// <summary>The names of every NatKit namespace on this machine (<c>ip netns list</c> filtered by prefix).</summary>
    public static async Task<IReadOnlyList<string>> ListAsync(CancellationToken cancellationToken = default)
    {
        var output = await SystemCommand.RunAsync("ip", ["netns", "list"], cancellationToken).ConfigureAwait(false);
        var names = new List<string>();
        foreach (var line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var name = line.Split(' ', 2)[0];
            if (name.StartsWith(Prefix, StringComparison.Ordinal))
            {
                names.Add(name);
            }
        }

        return names;
    }

    /// <summary>
    /// Removes every NatKit namespace whose name starts with <paramref name="prefix"/> (which must itself start with
    /// <see cref="Prefix"/>), killing the processes left inside them first. Returns the names removed.
    /// </summary>
    public static async Task<IReadOnlyList<string>> RemoveAllAsync(string prefix = Prefix,
        CancellationToken cancellationToken = default)
    {
        if (!prefix.StartsWith(Prefix, StringComparison.Ordinal))
        {
            throw new ArgumentException($"prefix '{prefix}' must start with '{Prefix}'", nameof(prefix));
        }

        var removed = new List<string>();
        foreach (var name in await ListAsync(cancellationToken).ConfigureAwait(false))
        {
            if (name.StartsWith(prefix, StringComparison.Ordinal))
            {
                await RemoveAsync(name).ConfigureAwait(false);
                removed.Add(name);
            }
        }

        return removed;
    }

    private static async Task RemoveAsync(string name)
    {
        // Processes left inside (a crashed run's gateway or iperf3) keep the namespace alive: ask them to stop
        // (SIGTERM: a gateway stops gracefully), then end the ones still there, by id.
        var (_, pids, _) = await SystemCommand.TryRunAsync("ip", ["netns", "pids", name]).ConfigureAwait(false);
        var ids = new List<int>();
        foreach (var pid in pids.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (int.TryParse(pid, out var id) && id != Environment.ProcessId)
            {
                ids.Add(id);
                _ = Libc.Kill(id, Libc.SIGTERM);
            }
        }

        foreach (var id in ids)
        {
            try
            {
                using var p = System.Diagnostics.Process.GetProcessById(id);
                using var grace = new CancellationTokenSource(TimeSpan.FromSeconds(3));
                try
                {
                    await p.WaitForExitAsync(grace.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    p.Kill(entireProcessTree: true);
                }
            }
            catch (ArgumentException)
            {
                // already gone
            }
            catch (InvalidOperationException)
            {
                // already gone
            }
        }

        _ = await SystemCommand.TryRunAsync("ip", ["netns", "del", name]).ConfigureAwait(false);
    }

    /// <summary>
    /// Runs <paramref name="action"/> on a fresh thread that has joined the named namespace (setns), and returns its
    /// result. The thread ends afterwards, so no other code ever runs in the wrong namespace.
    /// </summary>
    public static T RunInside<T>(string name, Func<T> action)
    {
        ArgumentNullException.ThrowIfNull(action);
        T result = default!;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                var fd = Libc.Open("/run/netns/" + name, Libc.O_RDONLY | Libc.O_CLOEXEC);
                if (fd < 0)
                {
                    throw Libc.Error($"open namespace {name}");
                }

                try
                {
                    if (Libc.SetNs(fd, Libc.CLONE_NEWNET) < 0)
                    {
                        throw Libc.Error($"setns {name}");
                    }
                }
                finally
                {
                    _ = Libc.Close(fd);
                }

                result = action();
            }
            catch (Exception e)
            {
                error = e;
            }
        })
        { IsBackground = true, Name = "natkit-setns" };
        thread.Start();
        thread.Join();
        if (error is not null)
        {
            throw error is IOException ? new IOException(error.Message, error) : error;
        }

        return result;
    }
}
