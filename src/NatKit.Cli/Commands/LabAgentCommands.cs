using System.CommandLine;
using System.Globalization;
using NatKit.Net;
using NatKit.Scenarios.Matrix;
using NatKit.Traversal.HardNat;
using NatKit.Traversal.Identity;

namespace NatKit.Cli.Commands;

/// <summary>`natkit lab agent`: one peer of a `lab matrix --netns` cell as a process of its own (the matrix starts
/// it inside the peer's namespace; see <see cref="MatrixAgent"/>).</summary>
internal sealed class LabAgentCommands : IVerbGroup
{
    public string? Parent => "lab";

    public Command Create()
    {
        var cmd = new Command("agent",
            "One peer of a `lab matrix --netns` cell, run by the matrix inside the peer's namespace: a traversal node that accepts, or connects to a node id, and prints the outcome as JSON.")
        {
            Hidden = true,
        };
        var bind = new Option<string>("--bind") { Description = "ADDRESS:PORT the node binds.", Required = true };
        var turn = new Option<string?>("--turn") { Description = "The cell's TURN server, ADDRESS:PORT (none: no relay)." };
        var portmap = new Option<string?>("--portmap") { Description = "Ask this router (ADDRESS:PORT) for a port mapping (NAT-PMP or PCP)." };
        var connect = new Option<string?>("--connect") { Description = "Connect to this node id." };
        var accept = new Option<bool>("--accept") { Description = "Accept one connection." };
        var probes = new Option<int>("--probes") { Description = "Birthday probes in total.", DefaultValueFactory = _ => new ProbeBudget().Total };
        var rate = new Option<int>("--probes-per-second") { Description = "Probes per second.", DefaultValueFactory = _ => new ProbeBudget().PerSecond };
        var timeout = new Option<int>("--timeout") { Description = "Seconds a connect may take.", DefaultValueFactory = _ => 60 };
        foreach (var o in new Option[] { bind, turn, portmap, connect, accept, probes, rate, timeout })
        {
            cmd.Options.Add(o);
        }

        cmd.SetAction(async (parse, ct) =>
        {
            var peer = parse.GetValue(connect);
            if ((peer is null) == !parse.GetValue(accept))
            {
                throw new CliException("lab agent needs exactly one of --accept and --connect NODE-ID.");
            }

            NodeId? id = null;
            if (peer is not null)
            {
                id = NodeId.TryParse(peer, out var parsed)
                    ? parsed
                    : throw new CliException($"--connect {peer}: not a node id (32 base32 characters, as the accepting agent prints after `node`).");
            }

            var options = new MatrixAgentOptions
            {
                Bind = ProxyCommands.ParseEndPoint(parse.GetValue(bind)!, "--bind"),
                Turn = parse.GetValue(turn) is { } t ? ProxyCommands.ParseEndPoint(t, "--turn") : null,
                PortMapGateway = parse.GetValue(portmap) is { } g ? ProxyCommands.ParseEndPoint(g, "--portmap") : null,
                Connect = id,
                Budget = Budget(parse.GetValue(probes), parse.GetValue(rate)),
                ConnectTimeout = parse.GetValue(timeout) > 0
                    ? TimeSpan.FromSeconds(parse.GetValue(timeout))
                    : throw new CliException("--timeout: a number of seconds above 0."),
            };
            await MatrixAgent.RunAsync(SystemNetwork.Instance, options, Console.Out, ct);
            return 0;
        });
        return cmd;
    }

    private static ProbeBudget Budget(int total, int perSecond)
    {
        try
        {
            return new ProbeBudget { Total = total, PerSecond = perSecond }.Validated();
        }
        catch (ArgumentException e)
        {
            throw new CliException(string.Create(CultureInfo.InvariantCulture,
                $"--probes {total} --probes-per-second {perSecond}: {e.Message}"));
        }
    }
}
