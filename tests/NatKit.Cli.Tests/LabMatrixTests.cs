using NatKit.Cli;
using NatKit.Cli.Commands;
using NatKit.Scenarios.Matrix;
using Spectre.Console;
using NatKit.Traversal;

namespace NatKit.Cli.Tests;

/// <summary>`natkit lab matrix`: its flags, the refusal while no traversal is plugged in, and the console grid
/// (rendered from constructed outcomes: a test of the renderer, not of a traversal).</summary>
public sealed class LabMatrixTests
{
    private static Task<(int ExitCode, string Output, string Errors)> Cli(params string[] arguments) =>
        Natkit.RunAsync(arguments);

    /// <summary>The console wraps long lines at its width: one line again, spaces as written.</summary>
    private static string Unwrapped(string text) =>
        string.Join(' ', text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

    [Theory]
    [InlineData("--loss", "2", "--loss '2'")]
    [InlineData("--loss", "abc", "--loss 'abc'")]
    [InlineData("--loss", "100%", "--loss '100%'")]
    [InlineData("--latency", "25", "--latency '25'")]
    [InlineData("--latency", "1h", "--latency '1h'")]
    [InlineData("--seed", "x1", "--seed 'x1'")]
    [InlineData("--types", "open,cone", "--types: unknown NAT type 'cone'")]
    [InlineData("--json", "/no/such/folder/m.json", "--json '/no/such/folder/m.json'")]
    [InlineData("--html", "/", "--html '/'")]
    public async Task ABadFlag_IsOneSentenceNamingIt_Exit2(string flag, string value, string expected)
    {
        var (code, output, errors) = await Cli("lab", "matrix", flag, value);
        Assert.Equal(2, code);
        Assert.Contains(expected, Unwrapped(output + errors), StringComparison.Ordinal);
        Assert.DoesNotContain(" at ", output + errors, StringComparison.Ordinal);
        Assert.Single((output + errors).Split("natkit:", StringSplitOptions.None).Skip(1)); // one message (the console may wrap it)
    }

    [Theory]
    [InlineData("--jsn", "--jsn")]
    [InlineData("--types", "--types")]
    public async Task AnUnknownOrIncompleteFlag_IsOneLineNamingIt_Exit2_NotTheWholeHelp(string flag, string named)
    {
        var (code, output, errors) = await Cli("lab", "matrix", flag);
        Assert.Equal(2, code);
        Assert.Contains(named, output + errors, StringComparison.Ordinal);
        Assert.Contains("See 'natkit lab matrix --help'.", Unwrapped(output + errors), StringComparison.Ordinal);
        Assert.DoesNotContain("Usage:", output + errors, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(new[] { "--bind", "127.0.0.1:4000" }, "exactly one of --accept and --connect")]
    [InlineData(new[] { "--bind", "127.0.0.1:4000", "--accept", "--connect", "x" }, "exactly one of --accept and --connect")]
    [InlineData(new[] { "--bind", "127.0.0.1:4000", "--connect", "not-an-id" }, "--connect not-an-id: not a node id")]
    [InlineData(new[] { "--bind", "nowhere", "--accept" }, "'nowhere' is not")]
    [InlineData(new[] { "--bind", "127.0.0.1:4000", "--accept", "--timeout", "0" }, "--timeout: a number of seconds above 0")]
    public async Task TheAgent_RefusesABadFlagInOneSentence_Exit2(string[] flags, string expected)
    {
        var (code, output, errors) = await Cli(["lab", "agent", .. flags]);
        Assert.Equal(2, code);
        Assert.Contains(expected, Unwrapped(output + errors), StringComparison.Ordinal);
        Assert.DoesNotContain(" at ", output + errors, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheVerbRunsNatKitsTraversal_AndWritesEveryCellAsJson()
    {
        Assert.NotNull(MatrixRunners.Default);
        var json = Path.Combine(Path.GetTempPath(), $"natkit-matrix-{Guid.NewGuid():N}.json");
        try
        {
            var (code, output, errors) = await Cli("lab", "matrix", "--types", "open,symmetric-random", "--json", json);
            Assert.True(code == 0, output + errors);
            using var doc = System.Text.Json.JsonDocument.Parse(await File.ReadAllTextAsync(json));
            // the one --json shape: an array of records, each named by its cell
            var cells = doc.RootElement.EnumerateArray().ToList();
            Assert.Equal(4, cells.Count);
            Assert.All(cells, c => Assert.Equal("name", c.EnumerateObject().First().Name));
            var hard = cells.Single(c => c.GetProperty("name").GetString() == "symmetric-random x symmetric-random");
            Assert.Equal("symmetric-random", hard.GetProperty("a").GetString());
            Assert.Equal("relay", hard.GetProperty("path").GetString());
            Assert.True(hard.GetProperty("connectMs").GetDouble() > 0);
            Assert.True(hard.GetProperty("wallMs").GetDouble() >= 0);
        }
        finally
        {
            File.Delete(json);
        }
    }

    [Fact]
    public async Task Netns_WithHtmlOrJson_IsOneSentence_Exit2()
    {
        var (code, output, errors) = await Cli("lab", "matrix", "--netns", "--json", "m.json");
        Assert.Equal(2, code);
        Assert.Contains("with --netns the result is one line per cell", Unwrapped(output + errors), StringComparison.Ordinal);
    }

    /// <summary>The traversal on real kernel NATs, the agents processes of their own in the peers' namespaces:
    /// `masquerade random` on both sides ends on the relay, and two `masquerade persistent` routers connect directly
    /// (each side first opens its own NAT with a hop-limited datagram); both agree with the lab.</summary>
    [PeerTheory("ip", "nft", Root = true)]
    [InlineData("kernel-random", "kernel-random x kernel-random: relay")]
    [InlineData("kernel-persistent", "kernel-persistent x kernel-persistent: direct (reflexive)")]
    public async Task Netns_RunsTheTraversalOnRealKernelNats_AndSaysWhetherTheLabAgrees(string type, string expected)
    {
        var (code, output, errors) = await Cli("lab", "matrix", "--netns", "--types", type);
        var text = System.Text.RegularExpressions.Regex.Replace(Unwrapped(output + errors), "\u001b\\[[0-9;]*m", "");
        Assert.True(code == 0, text);
        Assert.Contains(expected, text, StringComparison.Ordinal);
        Assert.Contains("agrees", text, StringComparison.Ordinal);
    }

    [Fact]
    public void ANetnsLine_SaysWhatHappened_AndWhetherTheLabAgrees()
    {
        var a = MatrixTypes.Find("kernel-random")!;
        var b = MatrixTypes.Find("open")!;
        var line = LabMatrixCommands.NetnsLine(new NetnsCellResult(a, b,
            new MatrixOutcome(MatrixPath.Direct, TraversalMethod.PeerReflexive, TimeSpan.FromMilliseconds(42), 3),
            new MatrixOutcome(MatrixPath.Direct, TraversalMethod.PeerReflexive, TimeSpan.FromMilliseconds(40), 3),
            TraversalOracle.Predict(a, b), TimeSpan.FromSeconds(3)));
        Assert.Equal("kernel-random x open: [green]direct[/] (peer-reflexive) in 42 ms; lab: direct; [green]agrees[/]", line);
        var failed = LabMatrixCommands.NetnsLine(new NetnsCellResult(a, a, MatrixOutcome.Failed("no [answer]"), null,
            TraversalOracle.Predict(a, a), TimeSpan.FromSeconds(3)));
        Assert.Equal("kernel-random x kernel-random: [red]failed[/]; lab: not run; [red bold]disagrees[/] (no [[answer]])", failed);
    }

    [Fact]
    public void Flags_BecomeTheRun()
    {
        var o = LabMatrixCommands.Options(["open, easy", "symmetric-random", "easy"], "7", "2%", "50ms", noRelay: true);
        Assert.Equal(["open", "easy", "symmetric-random"], o.Types.Select(t => t.Name));
        Assert.Equal(7, o.Seed);
        Assert.Equal(0.02, o.Link.Loss, 9);
        Assert.Equal(TimeSpan.FromMilliseconds(50), o.Link.Latency);
        Assert.False(o.Relay);
        Assert.False(o.OracleOptions.Relay);
        Assert.Equal(0.05, LabMatrixCommands.Options(null, null, "0.05", null, false).Link.Loss, 9);

        var defaults = LabMatrixCommands.Options(null, null, null, null, noRelay: false);
        Assert.Equal(MatrixTypes.All, defaults.Types);
        Assert.Equal(1, defaults.Seed);
        Assert.True(defaults.Relay);
        Assert.Equal(TimeSpan.FromMilliseconds(5), defaults.Link.Latency);
        Assert.Equal(NetnsMatrix.DefaultTypes, LabMatrixCommands.Options(null, null, null, null, false, netns: true).Types);
        Assert.Contains("kernel-dmz", NetnsMatrix.DefaultTypes.Select(t => t.Name));
    }

    [Fact]
    public void TheGrid_ShowsEachCellsPathMethodAndTime_ColouredByPath_AndMarksADisagreement()
    {
        var options = new MatrixOptions { Types = [MatrixTypes.Find("easy")!, MatrixTypes.Find("symmetric-random")!, MatrixTypes.Find("same-lan")!] };
        MatrixOutcome Outcome(string a, string b) => (a, b) switch
        {
            ("symmetric-random", "symmetric-random") => new(MatrixPath.Relay, TraversalMethod.Relay, TimeSpan.FromMilliseconds(812), 9),
            ("easy", "symmetric-random") => MatrixOutcome.Failed("timed out"),
            ("same-lan", _) => new(MatrixPath.Direct, TraversalMethod.Host, TimeSpan.FromMilliseconds(12), 2),
            _ => new(MatrixPath.Direct, TraversalMethod.Birthday, TimeSpan.FromMilliseconds(345), 300),
        };
        var cells = TraversalMatrix.Cells(options.Types).Select(c => new MatrixCellResult(c.A, c.B, 1, Outcome(c.A.Name, c.B.Name),
            TraversalOracle.Predict(c.A, c.B), TimeSpan.FromSeconds(1), TimeSpan.FromMilliseconds(2))).ToList();
        var result = new MatrixResult(options, cells, TimeSpan.FromMilliseconds(1500));

        var writer = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.Yes,
            ColorSystem = ColorSystemSupport.Standard,
            Out = new AnsiConsoleOutput(writer),
        });
        console.Profile.Width = 160;
        console.Write(LabMatrixCommands.Grid(result));
        console.Write(LabMatrixCommands.SameLan(result));
        var text = writer.ToString();
        Assert.Contains("birthday", text, StringComparison.Ordinal);
        Assert.Contains("345 ms", text, StringComparison.Ordinal);
        Assert.Contains("812 ms", text, StringComparison.Ordinal);
        Assert.Contains("≠ oracle: direct", text, StringComparison.Ordinal); // easy x symmetric-random failed, birthday expected
        Assert.Contains("\u001b[32mdirect", text, StringComparison.Ordinal);  // green
        Assert.Contains("\u001b[93mrelay", text, StringComparison.Ordinal);   // yellow
        Assert.Contains("\u001b[91mfailed", text, StringComparison.Ordinal);  // red
        Assert.Contains("same-lan", text, StringComparison.Ordinal);
        Assert.Equal("5 cells in 1.5 s of wall time (seed 1; every link 5 ms, 0% loss; relay on): 1 failed, 1 disagree with the oracle.",
            LabMatrixCommands.Summary(result));
    }
}
