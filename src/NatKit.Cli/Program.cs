using System.CommandLine;
using NatKit.Cli;

var root = new RootCommand("NatKit: be a NAT, emulate NATs, traverse NATs.");
foreach (var command in CommandCatalog.All())
{
    root.Subcommands.Add(command);
}

return await CliRunner.RunAsync(root, args).ConfigureAwait(false);
