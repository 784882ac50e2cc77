using NatKit.Nat.Internal;
using NatKit.Packets;

namespace NatKit.Nat;

/// <summary>Forgetting an inside host: what a tunnel server does when an inside address goes back to its pool.</summary>
public sealed partial class NatEngine
{
    /// <summary>
    /// Removes every dynamic, explicit and DMZ mapping of <paramref name="internalAddress"/> with all its sessions,
    /// now: ports are freed (with the policy's hold-down) and <see cref="INatObserver.MappingRemoved"/> is raised, as
    /// on expiry. Static forwards stay. Returns the number of sessions removed. A tunnel server calls this before it
    /// hands the address to another client, so no answer to the old client's flows can reach the new one. Scans the
    /// table: not a per-packet call.
    /// </summary>
    public int ForgetHost(Ipv4Address internalAddress)
    {
        var address = internalAddress.Value;
        var mappings = new HashSet<int>();
        var removed = 0;
        foreach (var i in _table.LiveSessions())
        {
            ref var s = ref _table.Sessions[i];
            if (s.IntAddr == address && _table.Mappings[s.Mapping].Kind != MappingKind.Static)
            {
                mappings.Add(s.Mapping);
                removed++;
            }
        }

        foreach (var (m, _) in _explicit)
        {
            if (_table.Mappings[m].IntAddr == address) mappings.Add(m); // explicit mappings without sessions too
        }

        foreach (var m in mappings)
        {
            EvictMapping(m);
        }

        return removed;
    }
}
