using System.CommandLine;
using System.Net;
using System.Net.Sockets;

namespace NatKit.Cli.Tests;

/// <summary>The whole command tree, walked in process (the same root Program.cs builds): every verb's help, and a
/// flag no verb has; then, as a user runs `natkit`, the one-sentence refusals for files that are missing or
/// malformed and for a port another program holds.</summary>
public sealed class CliTreeTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("natkit-clitree-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static RootCommand Root()
    {
        var root = new RootCommand("NatKit");
        foreach (var command in CommandCatalog.All())
        {
            root.Subcommands.Add(command);
        }

        return root;
    }

    /// <summary>Every command below the root with the words that reach it.</summary>
    private static IEnumerable<(string[] Path, Command Command)> Walk(Command command, string[] path)
    {
        foreach (var sub in command.Subcommands.Where(c => !c.Hidden))
        {
            string[] here = [.. path, sub.Name];
            yield return (here, sub);
            foreach (var below in Walk(sub, here))
            {
                yield return below;
            }
        }
    }

    public static TheoryData<string> Verbs()
    {
        var data = new TheoryData<string>();
        foreach (var (path, _) in Walk(Root(), []))
        {
            data.Add(string.Join(' ', path));
        }

        return data;
    }

    /// <summary>The verbs without positional arguments: on the others an unknown flag is taken as the argument's
    /// value (System.CommandLine's rule), which the verb then refuses as a value (a topology, a URL).</summary>
    public static TheoryData<string> VerbsWithoutArguments()
    {
        var data = new TheoryData<string>();
        foreach (var (path, command) in Walk(Root(), []))
        {
            if (command.Arguments.Count == 0)
            {
                data.Add(string.Join(' ', path));
            }
        }

        return data;
    }

    private static Command Find(RootCommand root, string verb) =>
        Walk(root, []).Single(c => string.Join(' ', c.Path) == verb).Command;

    [Fact]
    public void TheTreeHasEveryTopLevelVerb()
    {
        var top = Root().Subcommands.Select(c => c.Name).ToList();
        foreach (var verb in new[] { "bench", "gateway", "lab", "nat", "peer", "portmap", "proxy", "rendezvous", "stun", "tunnel", "turn" })
        {
            Assert.Contains(verb, top);
        }
    }

    [Theory]
    [MemberData(nameof(Verbs))]
    public void Help_Exits0_AndNamesEveryOptionAndSubcommand(string verb)
    {
        var root = Root();
        var command = Find(root, verb);
        using var output = new StringWriter();
        using var errors = new StringWriter();
        var code = root.Parse([.. verb.Split(' '), "--help"]).Invoke(new InvocationConfiguration { Output = output, Error = errors });
        var help = output.ToString();
        Assert.True(code == 0, $"{verb} --help: exit {code}: {help}{errors}");
        Assert.Equal("", errors.ToString());
        Assert.Contains("Usage:", help, StringComparison.Ordinal);
        foreach (var option in command.Options.Where(o => !o.Hidden))
        {
            Assert.Contains(option.Name, help, StringComparison.Ordinal);
        }

        foreach (var sub in command.Subcommands.Where(c => !c.Hidden))
        {
            Assert.Contains(sub.Name, help, StringComparison.Ordinal);
        }
    }

    [Theory]
    [MemberData(nameof(VerbsWithoutArguments))]
    public void AFlagTheVerbDoesNotHave_IsAParseErrorNamingIt(string verb)
    {
        var parse = Root().Parse([.. verb.Split(' '), "--no-such-flag"]);
        Assert.Contains(parse.Errors, e => e.Message.Contains("--no-such-flag", StringComparison.Ordinal));
    }

    [Fact]
    public async Task AFlagTheVerbDoesNotHave_AsAUserRunsIt_IsOneLine_Exit2_NotTheHelp()
    {
        var run = await Natkit.RunAsync("rendezvous", "serve", "--no-such-flag");
        Natkit.AssertRefused(run, "--no-such-flag");
        Assert.Contains("See 'natkit rendezvous serve --help'.", run.Errors, StringComparison.Ordinal);
        Assert.DoesNotContain("Usage:", run.Output + run.Errors, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("lab", "run", "/no/such/topology.yaml")]
    [InlineData("lab", "probe", "--topology", "/no/such/topology.yaml")]
    [InlineData("stun", "serve", "--config", "/no/such/stun.yaml")]
    [InlineData("stun", "serve", "--users-file", "/no/such/users")]
    [InlineData("turn", "serve", "--users-file", "/no/such/users")]
    [InlineData("stun", "serve", "--tls-cert", "/no/such/cert.pem")]
    [InlineData("proxy", "serve", "--config", "/no/such/proxy.yaml")]
    [InlineData("tunnel", "serve", "--token-file", "/no/such/tokens", "--external", "198.51.100.1")]
    public async Task AMissingFile_IsOneSentenceNamingIt_Exit2(params string[] arguments)
    {
        var file = arguments.First(a => a.StartsWith("/no/such/", StringComparison.Ordinal));
        Natkit.AssertRefused(await Natkit.RunAsync(arguments), file);
    }

    [Theory]
    [InlineData("lab", "run")]
    [InlineData("lab", "probe", "--topology")]
    [InlineData("lab", "netns", "up")]
    public async Task AMalformedTopology_IsOneSentenceWithItsLine_Exit2(params string[] verb)
    {
        var file = Path.Combine(_dir, "bad.yaml");
        await File.WriteAllTextAsync(file, "segments:\n  - name: lan\n    prefix: 10.0.0.0/99\n");
        var run = await Natkit.RunAsync([.. verb, file]);
        Natkit.AssertRefused(run, "bad.yaml");
        Assert.Matches(@"bad\.yaml:\d+:\d+: segments", run.Errors); // file:line:column: field
    }

    [Theory]
    [InlineData("stun", "serve", "--no-tcp", "--listen")]
    [InlineData("turn", "serve", "--user", "a:b", "--listen")]
    [InlineData("rendezvous", "serve", "--listen")]
    public async Task AUdpPortAnotherProgramHolds_IsOneSentenceNamingTheFlag_Exit2(params string[] verb)
    {
        using var holder = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        var port = ((IPEndPoint)holder.Client.LocalEndPoint!).Port;
        Natkit.AssertRefused(await Natkit.RunAsync([.. verb, $"127.0.0.1:{port}"]), $"127.0.0.1:{port}");
    }

    [Theory]
    [InlineData("proxy", "serve", "--listen")]
    [InlineData("stun", "serve", "--no-udp", "--listen")]
    public async Task ATcpPortAnotherProgramHolds_IsOneSentenceNamingTheFlag_Exit2(params string[] verb)
    {
        using var holder = new TcpListener(IPAddress.Loopback, 0);
        holder.Start();
        var port = ((IPEndPoint)holder.LocalEndpoint).Port;
        Natkit.AssertRefused(await Natkit.RunAsync([.. verb, $"127.0.0.1:{port}"]), $"127.0.0.1:{port}");
    }
}
