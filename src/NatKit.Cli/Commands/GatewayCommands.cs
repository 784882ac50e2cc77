using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using NatKit.Lab.Topology;
using NatKit.Linux;
using NatKit.Nat;
using NatKit.Scenarios;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>
/// `natkit gateway run|flows|stats`: the NAT engine on real TUN links, and a look inside a running one through its
/// control socket.
/// </summary>
internal sealed class GatewayCommands : IVerbGroup
{
    public Command Create()
    {
        var gateway = new Command("gateway", "Run the NAT engine between two TUN devices, on real traffic.");
        gateway.Subcommands.Add(Run());
        gateway.Subcommands.Add(Flows());
        gateway.Subcommands.Add(Stats());
        return gateway;
    }

    /// <summary>Resolves --preset/--policy into a policy: the preset, with the knobs a policy file names set on
    /// it (the lab topology's kebab-case schema, <see cref="NatPolicyFile"/>).</summary>
    internal static NatPolicy Policy(string preset, FileInfo? policyFile)
    {
        var basePolicy = NatPresets.Find(preset)?.Policy ?? throw new CliException(
            $"--preset {preset}: no such preset; use one of {string.Join(", ", NatPresets.All.Select(p => p.Name))}.");
        if (policyFile is null)
        {
            return basePolicy;
        }

        try
        {
            return NatPolicyFile.Load(policyFile.FullName, basePolicy);
        }
        catch (TopologyException e) when (e.Errors.Count > 0)
        {
            var first = e.Errors[0];
            if (first.Path == "(file)")
            {
                throw new CliException($"--policy {policyFile.Name}: cannot be read ({first.Problem.TrimEnd('.')}).", e);
            }

            var where = first.Line > 0 ? $"line {first.Line}: " : "";
            var more = e.Errors.Count > 1 ? $" ({e.Errors.Count - 1} more problem(s) after it)" : "";
            throw new CliException($"--policy {policyFile.Name}: {where}{first.Path}: {first.Problem.TrimEnd('.')}{more}.", e);
        }
    }

    private static Command Run()
    {
        var inside = new Option<string>("--inside") { Description = "Inside link: [NAMESPACE/]TUN (attached to, or created).", Required = true };
        var outside = new Option<string>("--outside") { Description = "Outside link: [NAMESPACE/]TUN.", Required = true };
        var external = new Option<string[]>("--external") { Description = "External (public) address; repeat for a pool.", Required = true, AllowMultipleArgumentsPerToken = true };
        var prefixes = new Option<string[]>("--inside-prefix") { Description = "A prefix behind the gateway; repeat as needed.", DefaultValueFactory = _ => ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"], AllowMultipleArgumentsPerToken = true };
        var insideAddress = new Option<string?>("--inside-address") { Description = "The gateway's own inside address (source of its ICMP errors)." };
        var preset = new Option<string>("--preset") { Description = "NAT behaviour preset (full-cone, symmetric, easy, hard, linux-masquerade, ...).", DefaultValueFactory = _ => "rfc-recommended" };
        var policyFile = new Option<FileInfo?>("--policy") { Description = "YAML or JSON file of NAT knobs in kebab-case, as a lab router's nat: (mapping: endpoint-independent, udp-timeout: 300s, ...); they override the --preset's." };
        var name = new Option<string>("--name") { Description = "Name of the control socket /run/natkit/NAME.sock.", DefaultValueFactory = _ => "gateway" };
        var noOffload = new Option<bool>("--no-offload") { Description = "Open the TUNs without virtio-net offloads (no GSO, full checksums)." };
        var tuning = new DataPlaneCliOptions();
        var run = new Command("run", "Forward between the inside and outside TUN until SIGINT/SIGTERM.")
        {
            CliConfig.CreateOption(), inside, outside, external, prefixes, insideAddress, preset, policyFile, name, noOffload, tuning.Realtime,
            tuning.BatchPause,
        };
        run.SetAction(async (parse, ct) =>
        {
            var policy = Policy(parse.GetValue(preset)!, parse.GetValue(policyFile));
            var config = Gateway.Config(policy, parse.GetValue(external)!, parse.GetValue(prefixes)!,
                parse.GetValue(insideAddress));
            var errors = config.Validate();
            if (errors.Count > 0)
            {
                throw new CliException(errors[0]);
            }

            var offloads = parse.GetValue(noOffload) ? TunOffloads.None : TunOffloads.All;
            // ready (and the control socket listening) only once both links carry packets
            await using var gw = await Gateway.StartAsync(TunLink.Parse(parse.GetValue(inside)!),
                TunLink.Parse(parse.GetValue(outside)!), config, offloads, tuning.Read(parse), ct).ConfigureAwait(false);
            // NAT-PMP/PCP on the inside when the policy offers them, announced to the LAN at start-up
            using var announcer = await GatewayPortMapping.ServeAsync(gw).ConfigureAwait(false);
            await using var upnp = await GatewayUpnp.ServeAsync(gw, w => Console.Error.WriteLine("natkit gateway: " + w)).ConfigureAwait(false); // UPnP IGD likewise
            await using var control = GatewayControl.Listen(gw, GatewayControl.PathFor(parse.GetValue(name)!));
            var (insideOffloads, outsideOffloads) = gw.Offloads;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"natkit gateway: forwarding {parse.GetValue(inside)} <-> {parse.GetValue(outside)} as {string.Join(",", parse.GetValue(external)!)} (offloads inside {insideOffloads}, outside {outsideOffloads}; real-time wake-ups {(gw.DataPlane.Realtime ? "on" : "off")}); control {control.Path}"));
            // Graceful stop on SIGINT and SIGTERM: finish the batch, close the control socket, report, exit 0.
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
            try
            {
                await Task.WhenAny(gw.DataPlane.Completion,
                    CliServing.UntilStoppedAsync(Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, reload: null, stop.Token)).ConfigureAwait(false);
            }
            finally
            {
                await stop.CancelAsync().ConfigureAwait(false);
                var stats = gw.DataPlane.Stats;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"natkit gateway: stopped; read {stats.InsideRead}/{stats.OutsideRead}, wrote {stats.InsideWritten}/{stats.OutsideWritten} (inside/outside), dropped {stats.Dropped}"));
            }

            if (gw.DataPlane.Completion.IsCompleted)
            {
                await gw.DataPlane.Completion.ConfigureAwait(false); // the data plane ended by itself: say why
            }

            return 0;
        });
        return run;
    }

    private static Command Flows()
    {
        var name = new Option<string>("--name") { Description = "The gateway's name (control socket /run/natkit/NAME.sock).", DefaultValueFactory = _ => "gateway" };
        var watch = new Option<bool>("--watch") { Description = "Redraw every second until Ctrl+C." };
        var json = new Option<bool>("--json") { Description = "Print JSON instead of a table." };
        var flows = new Command("flows", "List a running gateway's flow table, like conntrack -L.") { name, watch, json };
        flows.SetAction(async (parse, ct) =>
        {
            var path = GatewayControl.PathFor(parse.GetValue(name)!);
            if (parse.GetValue(json))
            {
                CliJson.WriteRecords(await GatewayControl.FlowsAsync(path, ct).ConfigureAwait(false), f => $"{f.Protocol} {f.Inside} {f.Remote}");
                return 0;
            }

            if (!parse.GetValue(watch))
            {
                AnsiConsole.Write(FlowTable(await GatewayControl.FlowsAsync(path, ct).ConfigureAwait(false)));
                return 0;
            }

            await AnsiConsole.Live(new Table()).StartAsync(async live =>
            {
                while (!ct.IsCancellationRequested)
                {
                    live.UpdateTarget(FlowTable(await GatewayControl.FlowsAsync(path, ct).ConfigureAwait(false)));
                    await Task.Delay(TimeSpan.FromSeconds(1), ct).ConfigureAwait(false);
                }
            }).ConfigureAwait(false);
            return 0;
        });
        return flows;
    }

    private static Command Stats()
    {
        var name = new Option<string>("--name") { Description = "The gateway's name.", DefaultValueFactory = _ => "gateway" };
        var json = new Option<bool>("--json") { Description = "Print JSON (one record, named by the gateway) instead of a table." };
        var stats = new Command("stats", "Show a running gateway's counters.") { name, json };
        stats.SetAction(async (parse, ct) =>
        {
            var s = await GatewayControl.StatusAsync(GatewayControl.PathFor(parse.GetValue(name)!), ct).ConfigureAwait(false);
            if (parse.GetValue(json))
            {
                CliJson.WriteRecords([s], _ => parse.GetValue(name)!);
                return 0;
            }

            var table = new Table().AddColumns("counter", "value");
            void Row(string k, object v) => table.AddRow(k, Convert.ToString(v, CultureInfo.InvariantCulture) ?? "");
            Row("packets read inside/outside", $"{s.DataPlane.InsideRead}/{s.DataPlane.OutsideRead}");
            Row("packets written inside/outside", $"{s.DataPlane.InsideWritten}/{s.DataPlane.OutsideWritten}");
            Row("dropped", s.DataPlane.Dropped);
            Row("write failures", s.DataPlane.WriteFailures);
            Row("GSO super-packets whole / segmented", $"{s.DataPlane.SuperPackets}/{s.DataPlane.Segmented}");
            Row("packets the engine made", s.DataPlane.Emitted);
            Row("sessions / mappings", $"{s.Sessions}/{s.Mappings}");
            Row("mappings created / removed", $"{s.Engine.MappingsCreated}/{s.Engine.MappingsRemoved}");
            Row("hairpinned", s.Engine.Hairpinned);
            Row("ICMP errors sent", s.Engine.IcmpErrorsSent);
            Row("flow table bytes", s.TableBytes);
            Row("offloads inside / outside", $"{s.InsideOffloads} / {s.OutsideOffloads}");
            AnsiConsole.Write(table);
            return 0;
        });
        return stats;
    }

    private static Table FlowTable(IReadOnlyList<GatewayFlow> flows)
    {
        var table = new Table().AddColumns("proto", "inside", "outside (mapped)", "remote", "tcp", "idle", "expires");
        foreach (var f in flows.OrderBy(f => f.Protocol, StringComparer.Ordinal).ThenBy(f => f.Inside, StringComparer.Ordinal))
        {
            table.AddTextRow(f.Protocol, f.Inside, f.Outside, f.Remote, f.Protocol == "tcp" ? f.TcpState : "",
                Seconds(f.IdleMilliseconds), Seconds(f.ExpiresInMilliseconds));
        }

        table.Caption($"{flows.Count} flow(s)");
        return table;
    }

    private static string Seconds(long milliseconds) =>
        (milliseconds / 1000.0).ToString("0.0", CultureInfo.InvariantCulture) + "s";
}
