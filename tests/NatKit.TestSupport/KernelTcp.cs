namespace NatKit.TestSupport;

/// <summary>This kernel's TCP congestion control algorithms, for tests that must tell a chosen one from the
/// default.</summary>
public static class KernelTcp
{
    /// <summary>The system's default algorithm (net.ipv4.tcp_congestion_control).</summary>
    public static string DefaultCongestionControl =>
        File.ReadAllText("/proc/sys/net/ipv4/tcp_congestion_control").Trim();

    /// <summary>An available algorithm that is not the default, so a socket reporting it was really set; throws
    /// when the kernel has only one.</summary>
    public static string NonDefaultCongestionControl()
    {
        var system = DefaultCongestionControl;
        return File.ReadAllText("/proc/sys/net/ipv4/tcp_available_congestion_control")
                   .Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                   .FirstOrDefault(a => a != system)
               ?? throw new InvalidOperationException($"this kernel has only '{system}': nothing to tell a set algorithm from the default");
    }
}
