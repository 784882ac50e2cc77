using Xunit;

namespace NatKit.TestSupport;

/// <summary>
/// A fact that needs real programs (coturn, curl, nft, ...) and optionally root. On a developer's machine
/// without them the test is skipped with the reason; in CI (<c>CI=true</c>) it runs anyway, so a missing
/// peer fails the run instead of passing silently.
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class PeerFactAttribute : FactAttribute
{
    public PeerFactAttribute(params string[] executables)
    {
        Skip = TestHost.WhyMissing(executables, needsRoot: false);
    }

    /// <summary>True when the test also needs root (namespaces, TUN devices, nftables).</summary>
    public bool Root
    {
        get => _root;
        set
        {
            _root = value;
            Skip ??= TestHost.WhyMissing([], value);
        }
    }

    private bool _root;
}

/// <summary>A theory variant of <see cref="PeerFactAttribute"/>.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class PeerTheoryAttribute : TheoryAttribute
{
    public PeerTheoryAttribute(params string[] executables)
    {
        Skip = TestHost.WhyMissing(executables, needsRoot: false);
    }

    public bool Root
    {
        get => _root;
        set
        {
            _root = value;
            Skip ??= TestHost.WhyMissing([], value);
        }
    }

    private bool _root;
}

/// <summary>Facts about the machine the tests run on.</summary>
public static class TestHost
{
    /// <summary>True under CI (<c>CI=true</c>), where a missing peer is a failure, not a skip.</summary>
    public static bool IsCi =>
        string.Equals(System.Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    public static bool IsRoot => OperatingSystem.IsLinux() && Libc.geteuid() == 0;

    /// <summary>The full path of an executable on PATH (or an absolute path that exists), else null.</summary>
    public static string? Which(string executable) => NatKit.Net.ChildProcess.Which(executable);

    /// <summary>Null when everything is here (or under CI); otherwise a sentence saying what is missing.</summary>
    public static string? WhyMissing(IEnumerable<string> executables, bool needsRoot)
    {
        if (IsCi)
        {
            return null;
        }

        var missing = executables.Where(e => Which(e) is null).ToList();
        var reasons = new List<string>();
        if (missing.Count > 0)
        {
            reasons.Add("not installed: " + string.Join(", ", missing) + " (scripts/test installs them)");
        }

        if (needsRoot && !IsRoot)
        {
            reasons.Add("needs root");
        }

        return reasons.Count == 0 ? null : string.Join("; ", reasons);
    }

    private static class Libc
    {
        [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "geteuid")]
        internal static extern uint geteuid();
    }
}
