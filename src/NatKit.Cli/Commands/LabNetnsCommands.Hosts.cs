using System.CommandLine;
using NatKit.Net;
using NatKit.Linux;

namespace NatKit.Cli.Commands;

/// <summary>`natkit lab netns exec|list|down`: what runs in and removes a lab that `up` built.</summary>
internal sealed partial class LabNetnsCommands
{
    private static Command Exec()
    {
        var host = new Argument<string>("host") { Description = "lan, wan, g1, m1, ... or a full namespace name." };
        var command = new Argument<string[]>("command") { Description = "The program and its arguments (after --).", Arity = ArgumentArity.OneOrMore };
        var tag = new Option<string?>("--tag") { Description = "Which lab, when several are up." };
        var exec = new Command("exec", "Run a command on a lab host: natkit lab netns exec HOST -- CMD ARGS.") { host, command, tag };
        exec.SetAction(async (parse, ct) =>
        {
            var ns = await ResolveAsync(parse.GetValue(host)!, parse.GetValue(tag), ct).ConfigureAwait(false);
            // The user's terminal goes straight through; Ctrl+C reaches the command, which ends, and so does this.
            await using var process = StartExec(["netns", "exec", ns, .. parse.GetValue(command)!]);
            return await process.WaitForExitAsync(ct).ConfigureAwait(false);
        });
        return exec;
    }

    private static ChildProcess StartExec(string[] arguments)
    {
        try
        {
            return ChildProcess.Start("ip", arguments, new ChildProcessOptions { UseThisTerminal = true, Name = "ip netns exec" });
        }
        catch (IOException e)
        {
            throw new CliException(e.Message);
        }
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
            var prefix = NamespaceLabTopology.DownPrefix(names, parse.GetValue(tag), parse.GetValue(all));
            var removed = prefix is null ? [] : await NetworkNamespace.RemoveAllAsync(prefix, ct).ConfigureAwait(false);
            // a lab of kernel NATs started no gateway, and on a fresh machine (/run is a tmpfs) the directory may not
            // exist at all: File.Delete would throw DirectoryNotFoundException for a file in a missing directory
            foreach (var name in Directory.Exists(GatewayControl.Directory) ? removed : [])
            {
                File.Delete(GatewayControl.PathFor(name));
                File.Delete(GatewayControl.PolicyPathFor(name)); // the log stays, for reading
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
