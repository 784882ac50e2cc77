using System.Net;

namespace NatKit.Bench.Proxy;

/// <summary>Network safety for contenders: every socket a started program holds is bound to loopback (its TCP
/// listener, its DNS socket), or the run stops. Read from /proc/PID/fd and /proc/net/{tcp,tcp6,udp,udp6}.</summary>
internal static class LoopbackCheck
{
    /// <exception cref="IOException">A socket of <paramref name="pid"/> is bound elsewhere.</exception>
    public static void EnsureLoopbackOnly(string name, int pid)
    {
        var fds = $"/proc/{pid}/fd";
        if (!Directory.Exists(fds))
        {
            return;
        }

        var inodes = new HashSet<string>();
        foreach (var fd in Directory.EnumerateFiles(fds))
        {
            if (new FileInfo(fd).LinkTarget is { } target && target.StartsWith("socket:[", StringComparison.Ordinal))
            {
                inodes.Add(target[8..^1]);
            }
        }

        foreach (var table in new[] { "tcp", "tcp6", "udp", "udp6" })
        {
            foreach (var line in File.ReadLines("/proc/net/" + table).Skip(1))
            {
                var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (f.Length > 9 && inodes.Contains(f[9]) && !IsLoopback(f[1][..f[1].IndexOf(':', StringComparison.Ordinal)]))
                {
                    throw new IOException($"{name} has a {table} socket bound to {f[1]}, not loopback: stopped");
                }
            }
        }
    }

    /// <summary>A /proc/net address (hex, 32-bit words in host order) on loopback (127/8, ::1, ::ffff:127/104).</summary>
    internal static bool IsLoopback(string hex)
    {
        var bytes = Convert.FromHexString(hex);
        for (var i = 0; i < bytes.Length; i += 4)
        {
            Array.Reverse(bytes, i, 4); // each word is printed in host (little-endian) order
        }

        var address = new IPAddress(bytes);
        return IPAddress.IsLoopback(address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address);
    }
}
