using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using NatKit.Lab.Topology;
using NatKit.Linux;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>
/// `natkit lab netns up|exec|list|down`: the lab as real Linux network namespaces, with NatKit gateways (or kernel
/// nftables NAT, for comparison) as the NAT routers, so unmodified programs can run behind any NAT.
/// </summary>
internal sealed class LabNetnsCommands : IVerbGroup
{
    public string? Parent => "lab";

    public Command Create()
    {
        var netns = new Command("netns", "The lab as network namespaces (root): up, exec HOST -- CMD, list, down.");
        netns.Subcommands.Add(Up());
        netns.Subcommands.Add(Exec());
        netns.Subcommands.Add(List());
        netns.Subcommands.Add(Down());
        return netns;
    }

    /// <summary>Parses a --kernel value into a kernel NAT kind.</summary>
    internal static KernelNatKind KernelKind(string text) => text.ToLowerInvariant() switch
    {
        "persistent" or "masquerade-persistent" or "eim" => KernelNatKind.MasqueradePersistent,
        "random" or "masquerade-random" or "symmetric" => KernelNatKind.MasqueradeRandom,
        "dmz" => KernelNatKind.Dmz,
        _ => throw new CliException($"unknown kernel NAT '{text}'; use persistent, random or dmz."),
    };

    /// <summary>Parses a kernel NAT with its DMZ details: <c>persistent</c>, <c>random</c> or
    /// <c>dmz[:HOST[:PORT[:PUBLIC-PORT]]]</c> (host: the only one behind the router; ports 4000).</summary>
    internal static KernelNat KernelNatSpec(string text)
    {
        var parts = text.Split(':');
        var kind = KernelKind(parts[0]);
        if (parts.Length == 1)
        {
            return new KernelNat(kind);
        }

        if (kind != KernelNatKind.Dmz || parts.Length > 4)
        {
            throw new CliException($"kernel NAT '{text}': only dmz takes details (dmz:HOST:PORT:PUBLIC-PORT).");
        }

        var host = parts[1].Length == 0 ? (Packets.Ipv4Address?)null
            : Packets.Ipv4Address.TryParse(parts[1], out var a) ? a : throw new CliException($"kernel NAT '{text}': '{parts[1]}' is not an IPv4 address.");
        var port = parts.Length > 2 ? Port(parts[2], text) : 4000;
        return new KernelNat(kind, host, port, parts.Length > 3 ? Port(parts[3], text) : port);

        static int Port(string p, string text) =>
            int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is >= 1 and <= 65535
                ? n : throw new CliException($"kernel NAT '{text}': '{p}' is not a port.");
    }

    /// <summary>Starts `natkit gateway run` for one router inside its namespace, detached, logging to
    /// /run/natkit/NAME.log (its policy in NAME.policy.json); returns when its control socket answers.</summary>
    internal static async Task<string> StartGatewayProcessAsync(NetnsGateway gateway, bool offload, CancellationToken ct)
    {
        var name = gateway.Namespace;
        Directory.CreateDirectory(GatewayControl.Directory);
        var log = Path.Combine(GatewayControl.Directory, name + ".log");
        var policy = Path.Combine(GatewayControl.Directory, name + ".policy.json");
        await File.WriteAllTextAsync(policy, NatPolicyFile.ToJson(gateway.Config.Policy), ct)
            .ConfigureAwait(false);
        var socket = GatewayControl.PathFor(name);
        File.Delete(socket);
        List<string> args =
        [
            "gateway", "run", "--inside", gateway.Inside.ToString(), "--outside", gateway.Outside.ToString(),
            "--inside-address", gateway.Config.EffectiveInsideAddress.ToString(), "--policy", policy, "--name", name,
        ];
        args.AddRange(gateway.Config.ExternalAddresses.SelectMany(a => new[] { "--external", a.ToString() }));
        args.AddRange(gateway.Config.InsidePrefixes.SelectMany(p => new[] { "--inside-prefix", $"{p.Network}/{p.Length}" }));
        if (!offload)
        {
            args.Add("--no-offload");
        }

        // setsid -f: the gateway runs on in a session of its own (it outlives this command); `ip` returns at once
        var started = await Net.ChildProcess.RunAsync("ip",
            ["netns", "exec", name, "setsid", "-f", "sh", "-c", "exec \"$0\" \"$@\" >>\"$LOG\" 2>&1 </dev/null", .. SelfCommand(), .. args],
            TimeSpan.FromSeconds(20), ct, options: new Net.ChildProcessOptions { Environment = new Dictionary<string, string> { ["LOG"] = log } })
            .ConfigureAwait(false);
        if (started.ExitCode != 0)
        {
            throw new CliException($"cannot start the gateway in {name}: {started.Errors.Trim()}");
        }

        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(TimeSpan.FromSeconds(20));
        while (true)
        {
            try
            {
                _ = await GatewayControl.StatusAsync(socket, deadline.Token).ConfigureAwait(false);
                return name;
            }
            catch (IOException) when (!deadline.IsCancellationRequested)
            {
                await Task.Delay(100, deadline.Token).ConfigureAwait(false); // waiting for a process to start up
            }
            catch (OperationCanceledException)
            {
                throw new CliException($"gateway {name} did not start; see {log}: {(File.Exists(log) ? File.ReadAllText(log).Trim() : "")}");
            }
        }
    }

    /// <summary>How to run this same natkit again: the apphost, or `dotnet natkit.dll`.</summary>
    internal static IEnumerable<string> SelfCommand()
    {
        var process = Environment.ProcessPath ?? "natkit";
        if (Path.GetFileNameWithoutExtension(process).Equals("dotnet", StringComparison.OrdinalIgnoreCase))
        {
            return [process, typeof(LabNetnsCommands).Assembly.Location];
        }

        return [process];
    }

    private static Command Up()
    {
        var topologyArgument = new Argument<string?>("topology")
        {
            Description = "A lab topology file (.yaml/.json) or built-in name; without it: LAN host - gateway(s) - WAN host.",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var kernel = new Option<string[]>("--kernel")
        {
            Description = "Kernel nftables NAT instead of NatKit: persistent (masquerade persistent), random (masquerade random) or dmz[:HOST[:PORT[:PUBLIC-PORT]]]; " +
                          "with a topology file, ROUTER=KIND for one router (repeatable), KIND for all.",
            AllowMultipleArgumentsPerToken = false,
        };
        var nat = new Option<string>("--nat")
        {
            Description = "natkit (a NatKit gateway per router) or kernel (nftables NAT per router, its kind chosen from the router's preset, or --preset without a topology file: " +
                          "endpoint-independent -> masquerade persistent, symmetric -> masquerade random; presets the kernel cannot express are refused).",
            DefaultValueFactory = _ => "natkit",
        };
        var hops = new Option<int>("--hops") { Description = "NatKit gateways in a row between the LAN and WAN host.", DefaultValueFactory = _ => 1 };
        var preset = new Option<string>("--preset") { Description = "NAT preset of every NatKit gateway (three-namespace topology).", DefaultValueFactory = _ => "rfc-recommended" };
        var tag = new Option<string?>("--tag") { Description = "Name tag (namespaces are nk-TAG-ROLE); random by default." };
        var noOffload = new Option<bool>("--no-offload") { Description = "Run the gateways without TUN offloads." };
        var noImpairments = new Option<bool>("--no-impairments") { Description = "Topology files: bring the links up clean, leaving out their latency, jitter, loss, duplication and reordering." };
        var up = new Command("up", "Build a topology as namespaces and start its NatKit gateways (or kernel NAT); leaves it up for exec and down.")
        {
            topologyArgument, kernel, nat, hops, preset, tag, noOffload, noImpairments,
        };
        up.SetAction(async (parse, ct) =>
        {
            var offload = !parse.GetValue(noOffload);
            var kernels = parse.GetValue(kernel) ?? [];
            var natMode = parse.GetValue(nat)!.ToLowerInvariant();
            if (natMode is not ("natkit" or "kernel"))
            {
                throw new CliException($"--nat {natMode}: use natkit or kernel.");
            }

            if (parse.GetValue(topologyArgument) is { } file)
            {
                var spec = LabCommands.LoadTopology(file);
                var routers = Routers(spec, natMode == "kernel", kernels, !parse.GetValue(noImpairments)); // refuses before anything is built
                await UpTopologyAsync(spec, routers, !parse.GetValue(noImpairments), parse.GetValue(tag), offload, ct).ConfigureAwait(false);
                return 0;
            }

            if (kernels.Length > 1 || kernels.Any(k => k.Contains('=', StringComparison.Ordinal)))
            {
                throw new CliException("--kernel ROUTER=KIND and repeated --kernel apply to topology files; the three-namespace topology takes one kind.");
            }

            var policy = GatewayCommands.Policy(parse.GetValue(preset)!, null); // fail early on a bad preset
            var chosen = kernels.Length == 1 ? KernelNatSpec(kernels[0])
                : natMode == "kernel" ? new KernelNat(KernelNatRules.KindFor(policy, out var why) ?? throw new CliException(
                    $"preset {parse.GetValue(preset)} has no kernel NAT twin: {why}; name one with --kernel persistent|random|dmz."))
                : null;
            if (chosen?.DmzHost is { } dmzHost && dmzHost.ToString() != GatewayTopology.LanHostAddress)
            {
                throw new CliException($"--kernel {kernels[0]}: the three-namespace topology's only LAN host is {GatewayTopology.LanHostAddress}.");
            }

            var kind = chosen?.Kind;
            var topology = chosen is { } kk
                ? await GatewayTopology.CreateKernelAsync(kk.Kind, parse.GetValue(tag), kk.DmzHostPort, kk.DmzPort, ct).ConfigureAwait(false)
                : await GatewayTopology.CreateNatKitAsync(parse.GetValue(hops), parse.GetValue(tag), ct).ConfigureAwait(false);
            try
            {
                foreach (var hop in topology.Hops)
                {
                    var gateway = new NetnsGateway(hop.Namespace, hop.Namespace, new TunLink(hop.InsideNamespace, hop.InsideTun),
                        new TunLink(hop.OutsideNamespace, hop.OutsideTun), Gateway.Config(hop, policy));
                    await StartGatewayProcessAsync(gateway, offload, ct).ConfigureAwait(false);
                }
            }
            catch
            {
                await topology.DisposeAsync().ConfigureAwait(false);
                throw;
            }

            var table = new Table().AddColumns("host", "namespace", "what");
            table.AddTextRow("lan", topology.Lan.Name, $"{GatewayTopology.LanHostAddress}/24, default via {GatewayTopology.LanGatewayAddress}");
            foreach (var g in topology.Gateways)
            {
                table.AddTextRow(g.Name[(g.Name.LastIndexOf('-') + 1)..], g.Name,
                    kind is { } kn ? $"kernel nftables {kn}" : $"natkit gateway (flows: natkit gateway flows --name {g.Name})");
            }

            table.AddTextRow("wan", topology.Wan.Name, $"{GatewayTopology.WanHostAddress}, {GatewayTopology.WanHostSecondAddress}; NAT public {GatewayTopology.PublicAddress}");
            AnsiConsole.Write(table);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"run: natkit lab netns exec lan --tag {topology.Tag} -- ping {GatewayTopology.WanHostAddress}; remove: natkit lab netns down --tag {topology.Tag}"));
            return 0;
        });
        return up;
    }

    /// <summary>
    /// The routers of a topology file as namespace routers: a NatKit gateway each, or kernel NAT for those named in
    /// <paramref name="kernels"/> (ROUTER=KIND, or KIND for all) and, with <paramref name="allKernel"/>, for every
    /// router, its kind chosen from its policy (<see cref="KernelNatRules.KindFor"/>). A router whose policy has no
    /// kernel twin is refused in one sentence.
    /// </summary>
    internal static List<NetnsRouter> Routers(TopologySpec spec, bool allKernel, IReadOnlyList<string> kernels, bool impairments = true)
    {
        var named = new Dictionary<string, KernelNat>(StringComparer.Ordinal);
        KernelNat? forAll = null;
        foreach (var k in kernels)
        {
            var eq = k.IndexOf('=', StringComparison.Ordinal);
            if (eq < 0)
            {
                forAll = KernelNatSpec(k);
                continue;
            }

            var router = k[..eq];
            if (!spec.Routers.Any(r => r.Name == router))
            {
                throw new CliException($"--kernel {k}: the topology has no router '{router}' (routers: {string.Join(", ", spec.Routers.Select(r => r.Name))}).");
            }

            named[router] = KernelNatSpec(k[(eq + 1)..]);
        }

        var routers = new List<NetnsRouter>();
        foreach (var r in spec.Routers)
        {
            var kernel = named.GetValueOrDefault(r.Name) ?? forAll;
            if (kernel is null && allKernel)
            {
                kernel = KernelNatRules.KindFor(r.Policy, out var why) is { } kind ? new KernelNat(kind) : throw new CliException(
                    $"router {r.Name} ({r.PresetName}) has no kernel NAT twin: {why}; run it as a NatKit gateway or name a kind with --kernel {r.Name}=persistent|random|dmz.");
            }

            routers.Add(new NetnsRouter(r.Name, r.Policy, r.InsideSegment, r.InsideAddress, r.OutsideSegment, r.OutsideAddresses, kernel,
                impairments ? Impairment(r.InsideLink, $"routers.{r.Name}.inside.link") : null,
                impairments ? Impairment(r.OutsideLink, $"routers.{r.Name}.outside.link") : null));
        }

        return routers;
    }

    /// <summary>A lab link as a namespace link impairment (null when it changes nothing). Reordering is refused:
    /// netem's reorder sends some packets early, where the lab holds some back.</summary>
    internal static LinkImpairment? Impairment(Lab.LinkProfile? link, string where)
    {
        if (link is null)
        {
            return null;
        }

        if (link.Reorder > 0)
        {
            throw new CliException($"{where}: reorder is not available in namespaces (netem reorders by sending packets early, the lab by holding them back); remove it or use the in-memory lab.");
        }

        var impairment = new LinkImpairment(link.Latency, link.Jitter, link.Loss, link.Duplicate);
        return impairment.IsNone ? null : impairment;
    }

    /// <summary>A lab topology file as namespaces: segments, hosts, and per router a NatKit gateway process or kernel NAT.</summary>
    private static async Task UpTopologyAsync(TopologySpec spec, List<NetnsRouter> routers, bool impairments, string? tag,
        bool offload, CancellationToken ct)
    {
        NamespaceLab lab;
        try
        {
            lab = await NamespaceLab.CreateAsync(
                [.. spec.Segments.Select(s => new NetnsSegment(s.Name, s.Prefix, impairments ? Impairment(s.Link, $"segments.{s.Name}.link") : null))],
                routers,
                [.. spec.Hosts.Select(h => new NetnsHost(h.Name, h.Segment, h.Addresses, h.Gateway, impairments ? Impairment(h.Link, $"hosts.{h.Name}.link") : null))],
                tag, ct).ConfigureAwait(false);
        }
        catch (NotSupportedException e) when (e.Message == NamespaceLab.NetemMissing)
        {
            throw new CliException($"{NamespaceLab.NetemMissing[..^1]} (--no-impairments).");
        }

        try
        {
            foreach (var router in lab.Layout.Routers)
            {
                await StartGatewayProcessAsync(router, offload, ct).ConfigureAwait(false);
            }
        }
        catch
        {
            await lab.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        lab.Detach();
        var table = new Table().AddColumns("name", "namespace", "what");
        foreach (var h in spec.Hosts)
        {
            table.AddTextRow(h.Name, lab.Layout.Hosts[h.Name], $"host on {h.Segment}: {string.Join(", ", h.Addresses)}");
        }

        foreach (var r in lab.Layout.Routers)
        {
            table.AddTextRow(r.Name, r.Namespace, $"natkit gateway {r.Inside} -> {r.Outside} as {string.Join(", ", r.Config.ExternalAddresses)}");
        }

        foreach (var r in lab.Layout.KernelRouters)
        {
            var dmz = r.Nat.Kind == KernelNatKind.Dmz ? $" (udp {r.OutsideAddresses[0]}:{r.Nat.DmzPort} <-> {r.Nat.DmzHost}:{r.Nat.DmzHostPort})" : "";
            table.AddTextRow(r.Name, r.Namespace, $"kernel nftables {r.Nat.Kind}{dmz} as {string.Join(", ", r.OutsideAddresses)}");
        }

        foreach (var (name, ns) in lab.Layout.Segments)
        {
            table.AddTextRow(name, ns, "segment (bridge + router)");
        }

        AnsiConsole.Write(table);
        Console.WriteLine($"run: natkit lab netns exec HOST --tag {lab.Tag} -- CMD; remove: natkit lab netns down --tag {lab.Tag}");
    }

    private static Command Exec()
    {
        var host = new Argument<string>("host") { Description = "lan, wan, g1, m1, ... or a full namespace name." };
        var command = new Argument<string[]>("command") { Description = "The program and its arguments (after --).", Arity = ArgumentArity.OneOrMore };
        var tag = new Option<string?>("--tag") { Description = "Which lab, when several are up." };
        var exec = new Command("exec", "Run a command on a lab host: natkit lab netns exec HOST -- CMD ARGS.") { host, command, tag };
        exec.SetAction(async (parse, ct) =>
        {
            var ns = await ResolveAsync(parse.GetValue(host)!, parse.GetValue(tag), ct).ConfigureAwait(false);
            var info = new ProcessStartInfo("ip") { UseShellExecute = false };
            foreach (var a in (string[])["netns", "exec", ns, .. parse.GetValue(command)!])
            {
                info.ArgumentList.Add(a);
            }

            using var process = Process.Start(info) ?? throw new CliException("cannot start ip netns exec");
            await process.WaitForExitAsync(ct).ConfigureAwait(false);
            return process.ExitCode;
        });
        return exec;
    }

    private static Command List()
    {
        var list = new Command("list", "List the NatKit namespaces (nk-*) on this machine.");
        list.SetAction(async (_, ct) =>
        {
            foreach (var name in await NetworkNamespace.ListAsync(ct).ConfigureAwait(false))
            {
                Console.WriteLine(name);
            }

            return 0;
        });
        return list;
    }

    private static Command Down()
    {
        var tag = new Option<string?>("--tag") { Description = "The lab to remove (its namespaces nk-TAG-*)." };
        var all = new Option<bool>("--all") { Description = "Remove every NatKit lab on this host (all nk-* namespaces), other users' too." };
        var down = new Command("down", "Remove a lab's namespaces (and the processes left in them), also after a crash.") { tag, all };
        down.SetAction(async (parse, ct) =>
        {
            var names = await NetworkNamespace.ListAsync(ct).ConfigureAwait(false);
            var prefix = DownPrefix(names, parse.GetValue(tag), parse.GetValue(all));
            var removed = prefix is null ? [] : await NetworkNamespace.RemoveAllAsync(prefix, ct).ConfigureAwait(false);
            // a lab of kernel NATs started no gateway, and on a fresh machine (/run is a tmpfs) the directory may not
            // exist at all: File.Delete would throw DirectoryNotFoundException for a file in a missing directory
            foreach (var name in Directory.Exists(GatewayControl.Directory) ? removed : [])
            {
                File.Delete(GatewayControl.PathFor(name));
                File.Delete(Path.Combine(GatewayControl.Directory, name + ".policy.json")); // the log stays, for reading
            }

            Console.WriteLine(removed.Count == 0 ? "nothing to remove" : "removed " + string.Join(' ', removed));
            return 0;
        });
        return down;
    }

    /// <summary>Which namespaces `lab netns down` removes: the lab --tag names, or all with --all; with neither,
    /// the only lab up, and a refusal naming the labs when there are several (they may be other users').</summary>
    internal static string? DownPrefix(IReadOnlyCollection<string> namespaces, string? tag, bool all)
    {
        if (all && tag is not null)
        {
            throw new CliException("--tag and --all: give one (--tag T removes one lab, --all every NatKit lab).");
        }

        if (all)
        {
            return NetworkNamespace.Prefix;
        }

        if (tag is not null)
        {
            return $"{NetworkNamespace.Prefix}{tag}-";
        }

        var tags = namespaces.Where(n => n.StartsWith(NetworkNamespace.Prefix, StringComparison.Ordinal))
            .Select(n => n[NetworkNamespace.Prefix.Length..])
            .Select(rest => rest.Contains('-', StringComparison.Ordinal) ? rest[..rest.IndexOf('-', StringComparison.Ordinal)] : rest)
            .Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        return tags.Count switch
        {
            0 => null,
            1 => $"{NetworkNamespace.Prefix}{tags[0]}-",
            _ => throw new CliException($"several labs are up ({string.Join(", ", tags)}): name one with --tag T, or remove them all with --all."),
        };
    }

    private static async Task<string> ResolveAsync(string host, string? tag, CancellationToken ct)
    {
        var names = await NetworkNamespace.ListAsync(ct).ConfigureAwait(false);
        if (names.Contains(host))
        {
            return host;
        }

        var matches = names.Where(n => n.EndsWith("-" + host, StringComparison.Ordinal) &&
                                       (tag is null || n.StartsWith($"{NetworkNamespace.Prefix}{tag}-", StringComparison.Ordinal))).ToList();
        return matches.Count switch
        {
            1 => matches[0],
            0 => throw new CliException($"no lab host '{host}' is up (natkit lab netns list)."),
            _ => throw new CliException($"several labs have a host '{host}': pick one with --tag ({string.Join(", ", matches)})."),
        };
    }
}
