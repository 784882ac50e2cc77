using System.CommandLine;
using System.Reflection;

namespace NatKit.Cli;

/// <summary>
/// A group of verbs: `natkit nat ...`, `natkit stun ...`, or a child of a shared parent such as `natkit bench
/// stun`. Each lives in its own file under Commands/ and is found by reflection, so adding a part never edits a
/// shared list.
/// </summary>
internal interface IVerbGroup
{
    /// <summary>The shared parent verb this group hangs under (<see cref="CommandCatalog.Parents"/>), or null for
    /// a top-level verb.</summary>
    string? Parent => null;

    Command Create();
}

internal static class CommandCatalog
{
    /// <summary>Parent verbs that several parts add children to.</summary>
    public static readonly IReadOnlyDictionary<string, string> Parents = new Dictionary<string, string>
    {
        ["bench"] = "Whole-system benchmarks, side by side with a peer where there is one.",
        ["lab"] = "The NAT lab: topologies in memory, or as Linux network namespaces.",
    };

    public static IEnumerable<Command> All()
    {
        var groups = typeof(CommandCatalog).Assembly.GetTypes()
            .Where(t => t is { IsClass: true, IsAbstract: false } && typeof(IVerbGroup).IsAssignableFrom(t))
            .Select(t => (IVerbGroup)Activator.CreateInstance(t, nonPublic: true)!)
            .Select(g => (g.Parent, Command: g.Create()))
            .OrderBy(g => g.Command.Name, StringComparer.Ordinal)
            .ToList();

        var result = new List<Command>();
        foreach (var (name, description) in Parents)
        {
            var children = groups.Where(g => g.Parent == name).ToList();
            if (children.Count == 0)
            {
                continue;
            }

            // A part may own the parent verb itself (`natkit lab` is the lab's group): others' children join it.
            var owner = groups.FirstOrDefault(g => g.Parent is null && g.Command.Name == name).Command;
            var parent = owner ?? new Command(name, description);
            foreach (var c in children)
            {
                parent.Subcommands.Add(c.Command);
            }

            if (owner is null)
            {
                result.Add(parent);
            }
        }

        foreach (var g in groups.Where(g => g.Parent is null))
        {
            result.Add(g.Command);
        }

        foreach (var g in groups.Where(g => g.Parent is not null && !Parents.ContainsKey(g.Parent)))
        {
            throw new InvalidOperationException($"verb group {g.Command.Name} names an unknown parent {g.Parent}");
        }

        return result.OrderBy(c => c.Name, StringComparer.Ordinal);
    }
}
