using System.Net;
using NatKit.Turn.Client;
using NatKit.Turn.Tests.Support;

namespace NatKit.Turn.Tests.Server;

/// <summary>What an operator sees in the log: allocations made, refreshed and deleted, credentials refused, peers
/// refused by the policy (stable event ids 100-120).</summary>
public sealed class TurnLogTests
{
    [Fact]
    public async Task AnAllocation_IsLoggedWhenMade_Refreshed_AndDeleted_WithItsUserAndReason()
    {
        var log = new ListLogger();
        await using var h = await TurnHarness.StartAsync(logger: log);
        using var cts = TurnHarness.Deadline();
        var client = await h.ClientAsync();
        Assert.Contains(log.Lines(100), l => l.StartsWith($"allocation for {TurnHarness.User} from ", StringComparison.Ordinal) && l.Contains("(udp): relayed 127.0.0.1:", StringComparison.Ordinal));

        await client.RefreshAsync(TimeSpan.FromSeconds(900), cts.Token);
        Assert.Contains(log.Lines(101), l => l.Contains("refreshed: lifetime 900 s", StringComparison.Ordinal));

        await client.DeallocateAsync(cts.Token);
        await log.WhenLogged(102).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Contains(log.Lines(102), l => l.Contains("deleted (client asked, Refresh lifetime 0)", StringComparison.Ordinal));
    }

    [Fact]
    public async Task AnExpiredAllocation_IsLoggedAsExpired()
    {
        var log = new ListLogger();
        await using var h = await TurnHarness.StartAsync(logger: log);
        await h.ClientAsync();
        h.Time.Advance(TimeSpan.FromMinutes(11)); // past the 600 s default lifetime: the expiry tick deletes it
        await log.WhenLogged(102).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Contains(log.Lines(102), l => l.Contains("deleted (expired)", StringComparison.Ordinal));
    }

    [Fact]
    public async Task AWrongPassword_IsLoggedAsAnAuthenticationFailure_NamingTheUser_NotThePassword()
    {
        var log = new ListLogger();
        await using var h = await TurnHarness.StartAsync(logger: log);
        using var cts = TurnHarness.Deadline();
        await Assert.ThrowsAnyAsync<Exception>(() =>
            TurnClient.AllocateAsync(h.Network, h.ClientOptions(password: "guessed-wrong"), cts.Token));
        var line = Assert.Single(log.Lines(110));
        Assert.Contains("wrong password", line, StringComparison.Ordinal);
        Assert.Contains($"(user {TurnHarness.User})", line, StringComparison.Ordinal);
        Assert.DoesNotContain("guessed-wrong", line, StringComparison.Ordinal);
        Assert.Empty(log.Lines(100));
    }

    [Fact]
    public async Task APeerThePolicyRefuses_IsLoggedWithTheUserAndTheReason()
    {
        var log = new ListLogger();
        await using var h = await TurnHarness.StartAsync(logger: log);
        using var cts = TurnHarness.Deadline();
        var client = await h.ClientAsync();
        await Assert.ThrowsAnyAsync<Exception>(() => client.CreatePermissionAsync(IPAddress.Parse("10.1.2.3"), cts.Token));
        var line = Assert.Single(log.Lines(120));
        Assert.StartsWith("refused peer 10.1.2.3:0 for alice from 127.0.0.1:", line, StringComparison.Ordinal);
    }
}
