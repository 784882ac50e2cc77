namespace NatKit.Linux;

/// <summary>
/// The namespaces one topology made, named <c>nk-TAG-ROLE</c>: created with reverse-path filtering off (links
/// here are asymmetric on purpose), removed together, newest first, on dispose.
/// </summary>
internal sealed class NamespaceSet : IAsyncDisposable
{
    private readonly List<NetworkNamespace> _owned = [];

    public NamespaceSet(string? tag)
    {
        Tag = tag ?? NetworkNamespace.NewRunTag();
    }

    public string Tag { get; }

    public async Task<NetworkNamespace> CreateAsync(string role, CancellationToken ct)
    {
        var ns = await NetworkNamespace.CreateAsync($"{NetworkNamespace.Prefix}{Tag}-{role}", ct).ConfigureAwait(false);
        _owned.Add(ns);
        await ns.SysctlAsync("net.ipv4.conf.all.rp_filter", "0", ct).ConfigureAwait(false);
        await ns.SysctlAsync("net.ipv4.conf.default.rp_filter", "0", ct).ConfigureAwait(false);
        return ns;
    }

    /// <summary>Runs <paramref name="build"/> on a new <paramref name="owner"/> of a set and returns the owner; on any
    /// failure disposes it (removing every namespace made so far) and rethrows.</summary>
    public static async Task<T> BuildOrRemoveAsync<T>(T owner, Func<T, Task> build)
        where T : IAsyncDisposable
    {
        try
        {
            await build(owner).ConfigureAwait(false);
            return owner;
        }
        catch
        {
            await owner.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Forgets the namespaces without removing them (left for `natkit lab netns down`).</summary>
    public void Detach() => _owned.Clear();

    public async ValueTask DisposeAsync()
    {
        for (var i = _owned.Count - 1; i >= 0; i--)
        {
            await _owned[i].DisposeAsync().ConfigureAwait(false);
        }

        _owned.Clear();
    }
}
