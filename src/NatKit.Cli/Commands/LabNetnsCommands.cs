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
internal sealed partial class LabNetnsCommands : IVerbGroup
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

    /// <summary>Starts `natkit gateway run` for one router inside its namespace, detached, logging to
    /// /run/natkit/NAME.log (its policy in NAME.policy.json); returns when its control socket answers.</summary>
    internal static async Task<string> StartGatewayProcessAsync(NetnsGateway gateway, bool offload, CancellationToken ct)
    {
        var name = gateway.Namespace;
        Directory.CreateDirectory(GatewayControl.Directory);
        var log = GatewayControl.LogPathFor(name);
        var policy = GatewayControl.PolicyPathFor(name);
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
                var routers = NamespaceLabTopology.Routers(spec, natMode == "kernel", kernels, !parse.GetValue(noImpairments)); // refuses before anything is built
                await UpTopologyAsync(spec, routers, !parse.GetValue(noImpairments), parse.GetValue(tag), offload, ct).ConfigureAwait(false);
                return 0;
            }

            if (kernels.Length > 1 || kernels.Any(k => k.Contains('=', StringComparison.Ordinal)))
            {
                throw new CliException("--kernel ROUTER=KIND and repeated --kernel apply to topology files; the three-namespace topology takes one kind.");
            }

            var policy = GatewayCommands.Policy(parse.GetValue(preset)!, null); // fail early on a bad preset
            var chosen = kernels.Length == 1 ? NamespaceLabTopology.ParseKernelNat(kernels[0])
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

    /// <summary>A lab topology file as namespaces: segments, hosts, and per router a NatKit gateway process or kernel NAT.</summary>
    private static async Task UpTopologyAsync(TopologySpec spec, IReadOnlyList<NetnsRouter> routers, bool impairments, string? tag,
        bool offload, CancellationToken ct)
    {
        var lab = await NamespaceLabTopology.CreateAsync(spec, routers, impairments, tag, ct).ConfigureAwait(false);
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
}
