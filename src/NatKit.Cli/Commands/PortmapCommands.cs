using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Text.Json;
using NatKit.Linux;
using NatKit.Net;
using NatKit.Packets;
using NatKit.PortMapping;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>`natkit portmap probe|add|delete|list`: try a router's NAT-PMP and PCP by hand (RFC 6886, RFC 6887).</summary>
internal sealed class PortmapCommands : IVerbGroup
{
    public Command Create()
    {
        var portmap = new Command("portmap", "Ask a router for port mappings with NAT-PMP (RFC 6886) or PCP (RFC 6887).");
        portmap.Subcommands.Add(Probe());
        portmap.Subcommands.Add(Add());
        portmap.Subcommands.Add(Delete());
        portmap.Subcommands.Add(List());
        return portmap;
    }

    private static Option<string> GatewayOption() => new("--gateway")
    {
        Description = "The router's inside address (NAT-PMP/PCP on port 5351).",
        Required = true,
    };

    private static Option<string?> ProtocolOption() => new("--protocol")
    {
        Description = "pcp or nat-pmp (default: PCP, then NAT-PMP, as RFC 6887 section 9 says).",
    };

    private static Option<string?> LocalOption() => new("--local")
    {
        Description = "The local address to send from (default: the one closest to the gateway).",
    };

    private static Option<bool> JsonOption() => new("--json") { Description = "Print the result as JSON." };

    private static PortMapper Mapper(string gateway, string? local)
    {
        var endpoint = CliFlags.EndPoint(gateway, 5351, "--gateway");
        if (endpoint.AddressFamily != System.Net.Sockets.AddressFamily.InterNetwork) throw new CliException($"--gateway {gateway}: NAT-PMP and PCP here are IPv4");
        var localAddress = CliFlags.Address(local, "--local");
        if (localAddress is { AddressFamily: not System.Net.Sockets.AddressFamily.InterNetwork }) throw new CliException($"--local {local}: not an IPv4 address");
        return new PortMapper(SystemNetwork.Instance, endpoint, new PortMappingClientOptions { LocalAddress = localAddress });
    }

    private static PortMappingProtocol? Protocol(string? text) => text?.ToLowerInvariant() switch
    {
        null => null,
        "pcp" => PortMappingProtocol.Pcp,
        "nat-pmp" or "natpmp" => PortMappingProtocol.NatPmp,
        _ => throw new CliException($"--protocol {text}: expected pcp or nat-pmp"),
    };

    private static IpProtocol Transport(string text) => text.ToLowerInvariant() switch
    {
        "udp" => IpProtocol.Udp,
        "tcp" => IpProtocol.Tcp,
        _ => throw new CliException($"--transport {text}: expected udp or tcp"),
    };

    private static Command Probe()
    {
        var cmd = new Command("probe", "Which of NAT-PMP and PCP the router answers, and its external address.");
        var gateway = GatewayOption();
        var local = LocalOption();
        var json = JsonOption();
        foreach (var o in new Option[] { gateway, local, json }) cmd.Options.Add(o);
        cmd.SetAction(async (parse, ct) =>
        {
            var mapper = Mapper(parse.GetValue(gateway)!, parse.GetValue(local));
            var probe = await mapper.ProbeAsync(ct);
            if (parse.GetValue(json))
            {
                CliJson.WriteRecords([(mapper.Gateway.ToString(), JsonSerializer.Serialize(new
                {
                    natPmp = probe.NatPmp,
                    pcp = probe.Pcp,
                    externalAddress = probe.ExternalAddress?.ToString(),
                    epoch = probe.Epoch,
                }))]);
            }
            else
            {
                var table = new Table().AddColumns("Gateway", "NAT-PMP", "PCP", "External address", "Epoch");
                table.AddRow(mapper.Gateway.ToString(), YesNo(probe.NatPmp), YesNo(probe.Pcp), probe.ExternalAddress?.ToString() ?? "-",
                    probe.Epoch?.ToString(CultureInfo.InvariantCulture) ?? "-");
                AnsiConsole.Write(table);
            }

            return probe.NatPmp || probe.Pcp ? 0 : 1;
        });
        return cmd;
    }

    private static Command Add()
    {
        var cmd = new Command("add", "Map a local port; with --hold, keep renewing it until Ctrl+C, then delete it.");
        var gateway = GatewayOption();
        var port = new Option<int>("--port") { Description = "The local (internal) port.", Required = true };
        var external = new Option<int>("--external-port") { Description = "The external port to ask for (0: any)." };
        var transport = new Option<string>("--transport") { Description = "udp or tcp.", DefaultValueFactory = _ => "udp" };
        var lifetime = new Option<int>("--lifetime") { Description = "Seconds to ask for.", DefaultValueFactory = _ => 7200 };
        var hold = new Option<bool>("--hold") { Description = "Stay, renew, and delete the mapping on exit." };
        var protocol = ProtocolOption();
        var local = LocalOption();
        var json = JsonOption();
        foreach (var o in new Option[] { gateway, port, external, transport, lifetime, hold, protocol, local, json }) cmd.Options.Add(o);
        cmd.SetAction(async (parse, ct) =>
        {
            var internalPort = PortValue(parse.GetValue(port), "--port", allowZero: false);
            var externalPort = PortValue(parse.GetValue(external), "--external-port", allowZero: true);
            var seconds = parse.GetValue(lifetime);
            if (seconds <= 0) throw new CliException("--lifetime must be positive");
            var mapper = Mapper(parse.GetValue(gateway)!, parse.GetValue(local));
            PortMappingLease? lease;
            try
            {
                lease = await mapper.MapAsync(Transport(parse.GetValue(transport)!), internalPort, TimeSpan.FromSeconds(seconds), externalPort,
                    Protocol(parse.GetValue(protocol)), ct);
            }
            catch (PortMappingException e)
            {
                throw new CliException(e.Message);
            }

            if (lease is null) throw new CliException($"{mapper.Gateway} does not answer NAT-PMP or PCP.");
            Print(lease.Grant, parse.GetValue(json));
            if (!parse.GetValue(hold))
            {
                return 0; // the mapping stays until its lifetime ends; `natkit portmap delete` removes it sooner
            }

            lease.Changed += g => Print(g, parse.GetValue(json));
            try
            {
                await Task.Delay(Timeout.Infinite, ct);
            }
            catch (OperationCanceledException)
            {
            }

            await lease.DisposeAsync();
            return 0;
        });
        return cmd;
    }

    private static Command Delete()
    {
        var cmd = new Command("delete", "Delete the mapping of a local port (0: all of this host's for the transport).");
        var gateway = GatewayOption();
        var port = new Option<int>("--port") { Description = "The local (internal) port; 0 for all.", Required = true };
        var transport = new Option<string>("--transport") { Description = "udp or tcp.", DefaultValueFactory = _ => "udp" };
        var protocol = ProtocolOption();
        var local = LocalOption();
        foreach (var o in new Option[] { gateway, port, transport, protocol, local }) cmd.Options.Add(o);
        cmd.SetAction(async (parse, ct) =>
        {
            var internalPort = PortValue(parse.GetValue(port), "--port", allowZero: true);
            var mapper = Mapper(parse.GetValue(gateway)!, parse.GetValue(local));
            var which = Protocol(parse.GetValue(protocol)) ?? PortMappingProtocol.NatPmp; // NAT-PMP deletes by address; PCP only its own nonce's
            var t = Transport(parse.GetValue(transport)!);
            var ok = which == PortMappingProtocol.Pcp
                ? await mapper.Pcp.DeleteAsync(t, internalPort, ct)
                : await mapper.NatPmp.DeleteAsync(t, internalPort, ct);
            if (!ok) throw new CliException($"{mapper.Gateway} did not confirm the deletion.");
            Console.WriteLine($"deleted {t.ToString().ToLowerInvariant()} {internalPort}");
            return 0;
        });
        return cmd;
    }

    private static Command List()
    {
        var cmd = new Command("list", "The explicit mappings of a running `natkit gateway` (NAT-PMP and PCP have no listing request).");
        var name = new Option<string>("--name") { Description = "The gateway's name (control socket /run/natkit/NAME.sock).", DefaultValueFactory = _ => "gateway" };
        var json = JsonOption();
        cmd.Options.Add(name);
        cmd.Options.Add(json);
        cmd.SetAction(async (parse, ct) =>
        {
            IReadOnlyList<GatewayMapping> mappings;
            try
            {
                mappings = await GatewayControl.MappingsAsync(GatewayControl.PathFor(parse.GetValue(name)!), ct);
            }
            catch (IOException e)
            {
                throw new CliException(e.Message);
            }

            if (parse.GetValue(json))
            {
                CliJson.WriteRecords(mappings.Select(m => ($"{m.Protocol} {m.Internal}", JsonSerializer.Serialize(new
                {
                    transport = m.Protocol,
                    @internal = m.Internal,
                    external = m.External,
                    secondsLeft = m.SecondsLeft,
                }))));
                return 0;
            }

            var table = new Table().AddColumns("Transport", "Internal", "External", "Seconds left");
            foreach (var m in mappings)
            {
                table.AddRow(m.Protocol, m.Internal, m.External, m.SecondsLeft.ToString(CultureInfo.InvariantCulture));
            }

            AnsiConsole.Write(table);
            return 0;
        });
        return cmd;
    }

    private static int PortValue(int value, string option, bool allowZero) =>
        value is >= 0 and <= 65535 && (allowZero || value > 0) ? value : throw new CliException($"{option} {value}: not a port");

    private static string YesNo(bool b) => b ? "yes" : "no";

    private static void Print(PortMappingGrant g, bool json)
    {
        if (json)
        {
            // one array per grant: the first, then (with --hold) one more each time a renewal changes it
            var transport = g.Transport.ToString().ToLowerInvariant();
            CliJson.WriteRecords([(string.Create(CultureInfo.InvariantCulture, $"{transport} {g.InternalPort}"), JsonSerializer.Serialize(new
            {
                protocol = g.Protocol switch { PortMappingProtocol.Pcp => "pcp", PortMappingProtocol.Upnp => "upnp", _ => "nat-pmp" },
                transport,
                internalPort = g.InternalPort,
                external = g.External.ToString(),
                lifetime = (int)g.Lifetime.TotalSeconds,
                epoch = g.Epoch,
            }))]);
        }
        else
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{g.Protocol switch { PortMappingProtocol.Pcp => "PCP", PortMappingProtocol.Upnp => "UPnP", _ => "NAT-PMP" }}: {g.Transport.ToString().ToLowerInvariant()} {g.InternalPort} -> {g.External} for {g.Lifetime.TotalSeconds:0} s"));
        }
    }
}
