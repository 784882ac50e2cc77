using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using NatKit.Net;
using NatKit.Traversal;
using NatKit.Traversal.Identity;
using NatKit.Traversal.Peer;
using NatKit.Traversal.Rendezvous;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>`natkit peer init|run|status`: a node of the peer network module (docs/peer.md) from a config file,
/// and what it holds now, asked over its control socket.</summary>
internal sealed partial class PeerCommands : IVerbGroup
{
    private static readonly Func<string, string?> Environment = System.Environment.GetEnvironmentVariable;

    public Command Create()
    {
        var peer = new Command("peer",
            "Peer network: TCP ports piped between nodes over uTP and TLS 1.3, through NATs (rendezvous, hole punching, TURN).");
        peer.Subcommands.Add(Init());
        peer.Subcommands.Add(Run());
        peer.Subcommands.Add(Status());
        return peer;
    }

    private static Option<string> KeyOption() => new("--key")
    {
        Description = "The node's key file (PEM, owner-only).",
        DefaultValueFactory = _ => PeerConfig.DefaultKeyPath(Environment),
    };

    private static Command Init()
    {
        var key = KeyOption();
        var force = new Option<bool>("--force") { Description = "Replace an existing key (the node gets a new id)." };
        var cmd = new Command("init", "Make a node's key pair as a PEM file readable by its owner only, and print the node id.")
        {
            key, force,
        };
        cmd.SetAction(parse =>
        {
            var path = parse.GetValue(key)!;
            if (string.IsNullOrWhiteSpace(path) || Directory.Exists(path))
            {
                throw new CliException($"--key '{path}': expected a file name.");
            }

            if (File.Exists(path) && !parse.GetValue(force))
            {
                throw new CliException($"--key {path}: a key exists there already; keep it, or replace it (and the node id) with --force.");
            }

            using var identity = NodeIdentity.Create();
            try
            {
                identity.Save(path, overwrite: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new CliException($"--key {path}: cannot be written ({e.Message.TrimEnd('.')}).");
            }

            Console.WriteLine($"node id {identity.Id}");
            Console.WriteLine($"key {Path.GetFullPath(path)} (owner-only)");
            return 0;
        });
        return cmd;
    }

    private static PeerConfig ReadConfig(string file)
    {
        try
        {
            return PeerConfigFile.Load(file, Environment);
        }
        catch (PeerConfigException e)
        {
            throw new CliException($"--config {file}: {Sentence(e.Message)}");
        }
        catch (IOException e)
        {
            throw new CliException($"--config {file}: cannot be read ({e.Message.TrimEnd('.')}).");
        }
    }

    private static NodeIdentity LoadKey(PeerConfig config, string file)
    {
        try
        {
            return NodeIdentity.Load(config.Key);
        }
        catch (FileNotFoundException)
        {
            throw new CliException($"--config {file}: key: {config.Key} does not exist; make it with natkit peer init --key {config.Key}.");
        }
        catch (Exception e) when (e is IOException or FormatException or UnauthorizedAccessException)
        {
            throw new CliException($"--config {file}: key: {Sentence(e.Message)}");
        }
    }

    /// <summary>A message as the end of one sentence: one full stop, no "(Parameter ...)".</summary>
    private static string Sentence(string message)
    {
        var paren = message.IndexOf(" (Parameter", StringComparison.Ordinal);
        var text = (paren < 0 ? message : message[..paren]).Trim().TrimEnd('.');
        return text + ".";
    }
}
