using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace NatKit.Cli;

/// <summary>
/// `--config FILE` for the server verbs: a YAML or JSON mapping whose keys are the verb's flags without "--"
/// (<c>listen: 127.0.0.1:3478</c>, <c>user: [alice:secret]</c>, <c>no-tcp: true</c>). The file becomes flags
/// appended after the command line's, for every flag the command line does not give itself: the command line
/// wins, and every value goes through the same checks as a flag. Unknown keys are refused with their line.
/// Secrets in the file stay out of the process list.
/// </summary>
internal static class CliConfig
{
    public const string Name = "--config";

    public static Option<string?> CreateOption() => new FlagsFile(Name)
    {
        Description = "YAML or JSON file of this verb's flags: keys are the flag names without '--' (listen: 127.0.0.1:3478, " +
                      "user: [alice:secret]); flags on the command line win; unknown keys are refused.",
    };

    /// <summary>The file named by the parsed command's --config, if any: its settings as extra arguments, and
    /// which flags came from it (for error messages).</summary>
    public static (string[] Arguments, string? File, IReadOnlySet<string> FromFile) Expand(ParseResult parse)
    {
        ArgumentNullException.ThrowIfNull(parse);
        var command = parse.CommandResult.Command;
        // only this kind of --config is a file of flags (`peer run --config` is a config of its own)
        var option = command.Options.FirstOrDefault(o => o is FlagsFile);
        if (option is null || parse.GetResult(option) is not OptionResult { Implicit: false } given ||
            given.Tokens.Count == 0)
        {
            return ([], null, new HashSet<string>());
        }

        var path = given.Tokens[0].Value;
        var onCommandLine = parse.CommandResult.Children.OfType<OptionResult>()
            .Where(r => !r.Implicit).Select(r => r.Option.Name).ToHashSet(StringComparer.Ordinal);
        var (arguments, fromFile) = Read(path, command, onCommandLine);
        return (arguments, path, fromFile);
    }

    /// <summary>The --config whose file holds this verb's flags.</summary>
    private sealed class FlagsFile(string name) : Option<string?>(name);

    internal static (string[] Arguments, IReadOnlySet<string> FromFile) Read(string path, Command command,
        IReadOnlySet<string> onCommandLine)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException($"--config {path}: cannot be read ({e.Message.TrimEnd('.')}).");
        }

        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text.Replace('\t', ' ')));
        }
        catch (YamlException e)
        {
            throw new CliException($"--config {path}: line {e.Start.Line}: not valid YAML or JSON ({e.Message.TrimEnd('.')}).");
        }

        if (stream.Documents.Count == 0)
        {
            return ([], new HashSet<string>());
        }

        if (stream.Documents[0].RootNode is not YamlMappingNode root)
        {
            throw new CliException($"--config {path}: expected a mapping of flag names to values, like listen: 127.0.0.1:3478.");
        }

        var options = command.Options
            .Where(o => o.Name.StartsWith("--", StringComparison.Ordinal) && o.Name != Name && o.Name != "--help")
            .ToDictionary(o => o.Name[2..], StringComparer.Ordinal);
        var args = new List<string>();
        var fromFile = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (keyNode, value) in root.Children)
        {
            var key = (keyNode as YamlScalarNode)?.Value ?? "";
            var line = keyNode.Start.Line.ToString(CultureInfo.InvariantCulture);
            if (!options.TryGetValue(key, out var option))
            {
                var known = string.Join(", ", options.Keys.Order(StringComparer.Ordinal));
                throw new CliException($"--config {path}: line {line}: unknown key '{key}'; keys are this verb's flags without '--': {known}.");
            }

            if (!fromFile.Add(option.Name))
            {
                throw new CliException($"--config {path}: line {line}: '{key}' is given twice.");
            }

            if (onCommandLine.Contains(option.Name))
            {
                continue; // the command line wins
            }

            var values = value switch
            {
                YamlScalarNode s => [s.Value ?? ""],
                YamlSequenceNode seq when seq.Children.All(c => c is YamlScalarNode) =>
                    seq.Children.Select(c => ((YamlScalarNode)c).Value ?? "").ToList(),
                _ => throw new CliException($"--config {path}: line {line}: '{key}' takes a value or a list of values."),
            };
            if (values.Count > 1 && option.Arity.MaximumNumberOfValues <= 1)
            {
                throw new CliException($"--config {path}: line {line}: '{key}' takes one value, not a list.");
            }

            foreach (var v in values)
            {
                args.Add(option.Name);
                args.Add(v);
            }
        }

        return (args.ToArray(), fromFile);
    }

    /// <summary>NAME:PASSWORD lines ('#' starts a comment): `--users-file`, kept out of argv and re-read on SIGHUP.</summary>
    public static Dictionary<string, string> ReadUsers(string path, string flag)
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException($"{flag} {path}: cannot be read ({e.Message.TrimEnd('.')}).");
        }

        var users = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i].Trim();
            if (line.Length == 0 || line.StartsWith('#'))
            {
                continue;
            }

            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon < 1)
            {
                throw new CliException($"{flag} {path}: line {i + 1}: expected NAME:PASSWORD.");
            }

            users[line[..colon]] = line[(colon + 1)..];
        }

        return users;
    }
}
