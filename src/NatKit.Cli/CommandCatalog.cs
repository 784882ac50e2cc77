using System.CommandLine;

namespace NatKit.Cli;

/// <summary>Every top-level verb group, in the order `natkit --help` lists them. Each group lives in its own
/// file under Commands/.</summary>
internal static class CommandCatalog
{
    public static IEnumerable<Command> All()
    {
        yield break;
    }
}
