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

    /// <summary>Starts `natkit gateway run` for one router inside its namespace, detached, logging to
    /// /run/natkit/NAME.log (its policy in NAME.policy.json); returns when its control socket answers.</summary>
    internal static async Task<string> StartGatewayProcessAsync(NetnsGateway gateway, bool offload, CancellationToken ct)
    {
        var name = gateway.Namespace;
        Directory.CreateDirectory(GatewayControl.Directory);
        var log = Path.Combine(GatewayControl.Directory, name + ".log");
        var policy = Path.Combine(GatewayControl.Directory, name + ".policy.json");
        await File.WriteAllTextAsync(policy, JsonSerializer.Serialize(gateway.Config.Policy, GatewayCommands.PolicyJson), ct)
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

        var info = new ProcessStartInfo("ip") { UseShellExecute = false };
        foreach (var a in (string[])["netns", "exec", name, "setsid", "sh", "-c", "exec \"$0\" \"$@\" >>\"$LOG\" 2>&1 </dev/null", .. SelfCommand(), .. args])
        {
            info.ArgumentList.Add(a);
        }

        info.Environment["LOG"] = log;
        using (Process.Start(info))
        {
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
        var kernel = new Option<string?>("--kernel") { Description = "Use kernel nftables NAT instead of NatKit: persistent (masquerade persistent), random (masquerade random) or dmz." };
        var hops = new Option<int>("--hops") { Description = "NatKit gateways in a row between the LAN and WAN host.", DefaultValueFactory = _ => 1 };
        var preset = new Option<string>("--preset") { Description = "NAT preset of every NatKit gateway (three-namespace topology).", DefaultValueFactory = _ => "rfc-recommended" };
        var tag = new Option<string?>("--tag") { Description = "Name tag (namespaces are nk-TAG-ROLE); random by default." };
        var noOffload = new Option<bool>("--no-offload") { Description = "Run the gateways without TUN offloads." };
        var up = new Command("up", "Build a topology as namespaces and start its NatKit gateways (or kernel NAT); leaves it up for exec and down.")
        {
            topologyArgument, kernel, hops, preset, tag, noOffload,
        };
        up.SetAction(async (parse, ct) =>
        {
            var offload = !parse.GetValue(noOffload);
            if (parse.GetValue(topologyArgument) is { } file)
            {
                if (parse.GetValue(kernel) is not null)
                {
                    throw new CliException("--kernel applies to the three-namespace topology, not to topology files.");
                }

                await UpTopologyAsync(LabCommands.LoadTopology(file), parse.GetValue(tag), offload, ct).ConfigureAwait(false);
                return 0;
            }

            var policy = GatewayCommands.Policy(parse.GetValue(preset)!, null); // fail early on a bad preset
            var kind = parse.GetValue(kernel) is { } k ? KernelKind(k) : (KernelNatKind?)null;
            var topology = kind is { } kk
                ? await GatewayTopology.CreateKernelAsync(kk, parse.GetValue(tag), cancellationToken: ct).ConfigureAwait(false)
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
            table.AddRow("lan", topology.Lan.Name, $"{GatewayTopology.LanHostAddress}/24, default via {GatewayTopology.LanGatewayAddress}");
            foreach (var g in topology.Gateways)
            {
                table.AddRow(g.Name[(g.Name.LastIndexOf('-') + 1)..], g.Name,
                    kind is { } kn ? $"kernel nftables {kn}" : $"natkit gateway (flows: natkit gateway flows --name {g.Name})");
            }

            table.AddRow("wan", topology.Wan.Name, $"{GatewayTopology.WanHostAddress}, {GatewayTopology.WanHostSecondAddress}; NAT public {GatewayTopology.PublicAddress}");
            AnsiConsole.Write(table);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"run: natkit lab netns exec lan --tag {topology.Tag} -- ping {GatewayTopology.WanHostAddress}; remove: natkit lab netns down --tag {topology.Tag}"));
            return 0;
        });
        return up;
    }

    /// <summary>A lab topology file as namespaces: segments, hosts, and one NatKit gateway process per router.</summary>
    private static async Task UpTopologyAsync(TopologySpec spec, string? tag, bool offload, CancellationToken ct)
    {
        var lab = await NamespaceLab.CreateAsync(
            [.. spec.Segments.Select(s => new NetnsSegment(s.Name, s.Prefix))],
            [.. spec.Routers.Select(r => new NetnsRouter(r.Name, r.Policy, r.InsideSegment, r.InsideAddress, r.OutsideSegment, r.OutsideAddresses))],
            [.. spec.Hosts.Select(h => new NetnsHost(h.Name, h.Segment, h.Addresses, h.Gateway))],
            tag, ct).ConfigureAwait(false);
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
            table.AddRow(h.Name, lab.Layout.Hosts[h.Name], $"host on {h.Segment}: {string.Join(", ", h.Addresses)}");
        }

        foreach (var r in lab.Layout.Routers)
        {
            table.AddRow(r.Name, r.Namespace, $"natkit gateway {r.Inside} -> {r.Outside} as {string.Join(", ", r.Config.ExternalAddresses)}");
        }

        foreach (var (name, ns) in lab.Layout.Segments)
        {
            table.AddRow(name, ns, "segment (bridge + router)");
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
        var tag = new Option<string?>("--tag") { Description = "Remove only this lab; all NatKit namespaces (nk-*) by default." };
        var down = new Command("down", "Remove lab namespaces (and the processes left in them), also after a crash.") { tag };
        down.SetAction(async (parse, ct) =>
        {
            var prefix = parse.GetValue(tag) is { } t ? $"{NetworkNamespace.Prefix}{t}-" : NetworkNamespace.Prefix;
            var removed = await NetworkNamespace.RemoveAllAsync(prefix, ct).ConfigureAwait(false);
            foreach (var name in removed)
            {
                File.Delete(GatewayControl.PathFor(name));
                File.Delete(Path.Combine(GatewayControl.Directory, name + ".policy.json")); // the log stays, for reading
            }

            Console.WriteLine(removed.Count == 0 ? "nothing to remove" : "removed " + string.Join(' ', removed));
            return 0;
        });
        return down;
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
