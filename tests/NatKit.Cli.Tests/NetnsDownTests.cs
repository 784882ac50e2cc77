using NatKit.Cli.Commands;

namespace NatKit.Cli.Tests;

/// <summary>`natkit lab netns down` removes the named lab only: other labs on the host may be other users'.</summary>
public sealed class NetnsDownTests
{
    private static readonly string[] TwoLabs = ["nk-a1b2c3-lan", "nk-a1b2c3-wan", "nk-demo-alice", "other-ns"];

    [Fact]
    public void WithATag_OnlyThatLab()
    {
        Assert.Equal("nk-demo-", LabNetnsCommands.DownPrefix(TwoLabs, "demo", all: false));
        Assert.Equal("nk-", LabNetnsCommands.DownPrefix(TwoLabs, null, all: true));
    }

    [Fact]
    public void WithNeither_TheOnlyLabUp_OrNothing()
    {
        Assert.Equal("nk-a1b2c3-", LabNetnsCommands.DownPrefix(["nk-a1b2c3-lan", "nk-a1b2c3-g1", "other-ns"], null, all: false));
        Assert.Null(LabNetnsCommands.DownPrefix(["other-ns"], null, all: false));
    }

    [Fact]
    public void WithNeither_AndSeveralLabs_RefusesNamingThem()
    {
        var e = Assert.Throws<CliException>(() => LabNetnsCommands.DownPrefix(TwoLabs, null, all: false));
        Assert.Equal("several labs are up (a1b2c3, demo): name one with --tag T, or remove them all with --all.", e.Message);
        Assert.Throws<CliException>(() => LabNetnsCommands.DownPrefix(TwoLabs, "demo", all: true));
    }
}
