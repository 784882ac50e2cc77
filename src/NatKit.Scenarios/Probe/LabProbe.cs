using System.Globalization;
using System.Net;
using NatKit.Lab;
using NatKit.Lab.Capture;
using NatKit.Nat;
using NatKit.Net;
using NatKit.Stun.Client;
using NatKit.Stun.Discovery;
using NatKit.Stun.Server;
using NatKit.Traversal.HardNat;

namespace NatKit.Scenarios.Probe;

/// <summary>What the probe expects of a policy, in the discovery client's terms.</summary>
public sealed record ProbeExpectation(NatMapping Mapping, NatFiltering Filtering, bool Hairpinning,
    bool PortPreserved, IReadOnlyList<TimeSpan> Lifetimes, PortAllocation Ports)
{
    /// <summary>What RFC 5780 discovery should find behind a NAT with <paramref name="policy"/>.</summary>
    public static ProbeExpectation For(NatPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        // Linux-style port sharing keeps the source port for every destination while the reply tuple stays
        // unique: seen from outside, that is endpoint-independent mapping.
        var mapping = policy.SharePortsAcrossDestinations && policy.PortAssignment == PortAssignment.Preserving
            ? NatMapping.EndpointIndependent
            : policy.Mapping switch
        {
            MappingBehavior.EndpointIndependent => NatMapping.EndpointIndependent,
            MappingBehavior.AddressDependent => NatMapping.AddressDependent,
            _ => NatMapping.AddressAndPortDependent,
        };
        var filtering = policy.Filtering switch
        {
            FilteringBehavior.EndpointIndependent => NatFiltering.EndpointIndependent,
            FilteringBehavior.AddressDependent => NatFiltering.AddressDependent,
            _ => NatFiltering.AddressAndPortDependent,
        };
        var preserved = policy.PortAssignment is PortAssignment.Preserving or PortAssignment.Overloading &&
                        LabHost.EphemeralPortFirst >= policy.PortRangeStart &&
                        LabHost.EphemeralPortLast <= policy.PortRangeEnd;
        List<TimeSpan> lifetimes = [policy.UdpTimeout];
        if (policy.UdpUnrepliedTimeout is { } unreplied) lifetimes.Add(unreplied);
        // A mapping per destination gets its port from the allocator: in sequence, or at random (a preserving NAT
        // keeps the port for the first destination only; the next one collides and goes random). Overloading
        // keeps it for every destination by evicting the older mapping.
        var ports = mapping == NatMapping.EndpointIndependent || policy.PortAssignment == PortAssignment.Overloading
            ? PortAllocation.Fixed
            : policy.PortAssignment == PortAssignment.Sequential ? PortAllocation.Sequential : PortAllocation.Random;
        return new ProbeExpectation(mapping, filtering, policy.Hairpinning != HairpinBehavior.None, preserved, lifetimes,
            ports);
    }
}

/// <summary>One probed NAT: what discovery found from inside the lab, and what the policy says.</summary>
public sealed record ProbeResult(string Name, NatPolicy Policy, NatBehavior Found, ProbeExpectation Expected,
    TimeSpan VirtualTime, TimeSpan LifetimeResolution, NatProfile? Ports)
{
    public bool PortAllocationMatches => Ports?.Allocation == Expected.Ports;

    /// <summary>How new mappings get their ports, in a word or two: "same", "+1 each", "random", "?".</summary>
    public static string Describe(NatProfile? profile) => profile?.Allocation switch
    {
        PortAllocation.Fixed => "same",
        PortAllocation.Sequential => string.Create(CultureInfo.InvariantCulture, $"{profile.Step:+0;-0} each"),
        PortAllocation.Random => "random",
        _ => "?",
    };

    public bool MappingMatches => Found.Mapping == Expected.Mapping;

    public bool FilteringMatches => Found.Filtering == Expected.Filtering;

    public bool HairpinningMatches => Found.Hairpinning == Expected.Hairpinning;

    public bool PortPreservationMatches => Found.PortPreserved == Expected.PortPreserved;

    /// <summary>True when the measured lifetime is within the search resolution of a timeout the policy has
    /// (or was not measured).</summary>
    public bool LifetimeMatches => Found.BindingLifetime is not { } t ||
        Expected.Lifetimes.Any(l => Found.BindingLifetimeIsLowerBound ? l >= t : (t - l).Duration() <= LifetimeResolution);

    public bool AllMatch => MappingMatches && FilteringMatches && HairpinningMatches && PortPreservationMatches &&
                            LifetimeMatches && PortAllocationMatches;
}

/// <summary>Options for <see cref="LabProbe"/>.</summary>
public sealed record LabProbeOptions
{
    /// <summary>Seed of each probe's lab.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>Measure the binding lifetime (RFC 5780 section 4.6): a binary search over idle times, minutes of
    /// virtual time that take milliseconds.</summary>
    public bool MeasureLifetime { get; init; } = true;

    /// <summary>Longest idle time the lifetime search tries.</summary>
    public TimeSpan LifetimeMax { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Precision of the lifetime search.</summary>
    public TimeSpan LifetimeResolution { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Link between the client's LAN and its router (and everything else): latency etc.</summary>
    public LinkProfile Link { get; init; } = new() { Latency = TimeSpan.FromMilliseconds(5) };

    /// <summary>If set, a pcap of the client's LAN and of the internet is written here per probe
    /// (NAME-lan.pcap, NAME-internet.pcap).</summary>
    public string? PcapDirectory { get; init; }
}

/// <summary>
/// Classifies NAT policies from the inside: for each one, a lab with an RFC 5780 STUN server (two addresses)
/// on the internet and a client behind a router running that policy; NatKit.Stun's discovery client
/// (<see cref="NatBehaviorDiscovery"/>) runs on the client host, exactly as it runs on a real network.
/// </summary>
public static class LabProbe
{
    public static readonly IPAddress ServerPrimary = IPAddress.Parse("203.0.113.100");
    public static readonly IPAddress ServerAlternate = IPAddress.Parse("203.0.113.101");

    /// <summary>Probes every preset of <see cref="NatPresets.All"/> (or those named), each in its own lab, in
    /// parallel (each lab is single-threaded and independent, so results do not depend on the interleaving).</summary>
    public static IReadOnlyList<ProbeResult> ProbePresets(IEnumerable<NatPreset>? presets = null,
        LabProbeOptions? options = null)
    {
        var list = (presets ?? NatPresets.All).ToList();
        var results = new ProbeResult[list.Count];
        Parallel.For(0, list.Count, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount },
            i => results[i] = Probe(list[i].Name, list[i].Policy, options));
        return results;
    }

    /// <summary>Probes one policy in a fresh lab, on the calling thread.</summary>
    public static ProbeResult Probe(string name, NatPolicy policy, LabProbeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(policy);
        options ??= new LabProbeOptions();
        var lab = new VirtualNetwork(options.Seed);
        var internet = lab.AddSegment("internet", link: options.Link);
        var home = lab.AddSegment("home", "192.168.1.0/24", options.Link);
        lab.AddRouter("nat", policy, home, "192.168.1.1", internet, "198.51.100.1");
        var server = lab.AddHost("stun-server", internet, ServerPrimary.ToString(), ServerAlternate.ToString());
        var client = lab.AddHost("client", home, "192.168.1.10");
        var captures = new List<PacketCapture>();
        if (options.PcapDirectory is { } dir)
        {
            Directory.CreateDirectory(dir);
            captures.Add(lab.Capture(home, File.Create(Path.Combine(dir, $"{name}-lan.pcap"))));
            captures.Add(lab.Capture(internet, File.Create(Path.Combine(dir, $"{name}-internet.pcap"))));
        }

        try
        {
            var (found, ports) = Run(lab, client, server, options, observePorts: true);
            return new ProbeResult(name, policy, found, ProbeExpectation.For(policy), lab.Now,
                options.LifetimeResolution, ports);
        }
        finally
        {
            captures.ForEach(c => c.Dispose());
        }
    }

    /// <summary>
    /// Runs RFC 5780 discovery from <paramref name="client"/> against a STUN server started on
    /// <paramref name="server"/> (which needs two addresses: primary and alternate), in <paramref name="lab"/>.
    /// Works on any topology: whatever NATs lie between the two shape the answer.
    /// </summary>
    public static NatBehavior Discover(VirtualNetwork lab, LabHost client, LabHost server, LabProbeOptions? options = null) =>
        Run(lab, client, server, options, observePorts: false).Behavior;

    /// <summary>
    /// How the NAT(s) between <paramref name="client"/> and an RFC 5780 STUN server allocate ports for new
    /// mappings: one fresh socket sends a Binding request to each of the server's four endpoints (primary address,
    /// both ports; then the alternate address, both ports), and <see cref="NatProfiler"/> reads the mapped ports
    /// (the traversal's own profiler: what the probe reports is what port prediction will see). Null when a
    /// request got no answer.
    /// </summary>
    public static async Task<NatProfile?> ObservePortAllocationAsync(INetwork client, StunServer server,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(server);
        var primary = server.UdpEndPoints[0].Address;
        var endpoints = server.UdpEndPoints
            .OrderBy(e => e.Address.Equals(primary) ? 0 : 1).ThenBy(e => e.Port).ToList();
        var stun = new StunClient(client);
        using var socket = await client.BindUdpAsync(new IPEndPoint(IPAddress.Any, 0), cancellationToken);
        var seen = new List<MappingObservation>(endpoints.Count);
        foreach (var endpoint in endpoints)
        {
            var response = await stun.BindingAsync(socket, endpoint, default, cancellationToken);
            if (response?.MappedAddress is not { } mapped) return null;
            seen.Add(new MappingObservation(endpoint, mapped));
        }

        return NatProfiler.Infer(socket.LocalEndPoint, seen);
    }

    private static (NatBehavior Behavior, NatProfile? Ports) Run(VirtualNetwork lab, LabHost client,
        LabHost server, LabProbeOptions? options, bool observePorts)
    {
        ArgumentNullException.ThrowIfNull(lab);
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(server);
        options ??= new LabProbeOptions();
        if (server.LocalAddresses.Count < 2)
        {
            throw new ArgumentException(
                $"STUN server host {server.Name} needs two addresses for RFC 5780 (primary and alternate)");
        }

        var primary = new IPEndPoint(server.LocalAddresses[0], StunServerOptions.DefaultPort);
        return lab.Run(async () =>
        {
            // The server is left running when the scenario ends: the lab is thrown away with it, and stopping
            // it would only add work (its DisposeAsync cancels through the thread pool).
            var stunServer = await StunServer.StartAsync(server, new StunServerOptions
            {
                Primary = primary,
                AlternateAddress = server.LocalAddresses[1],
                EnableTcp = false,
                RateLimitPerSecond = 0,
            });
            // Ports first: discovery's own mappings would only move a sequential allocator along.
            var ports = observePorts
                ? await ObservePortAllocationAsync(client, stunServer)
                : null;
            var discovery = new NatBehaviorDiscovery(client, primary, new NatDiscoveryOptions
            {
                MeasureBindingLifetime = options.MeasureLifetime,
                BindingLifetimeMax = options.LifetimeMax,
                BindingLifetimeResolution = options.LifetimeResolution,
            });
            return (await discovery.RunAsync(), ports);
        });
    }
}
