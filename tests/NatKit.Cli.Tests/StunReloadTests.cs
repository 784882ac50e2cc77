using System.Net;
using NatKit.Net;
using NatKit.Stun.Client;

namespace NatKit.Cli.Tests;

/// <summary>`natkit stun serve` as an operator runs it: SIGHUP re-reads the users (--user, --users-file) and the
/// per-source rate limit from the command line and --config's file; a reload that would fail is logged and the
/// running settings stay. A real process, real signals, real STUN requests with short-term credentials.</summary>
public sealed class StunReloadTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("natkit-stunreload-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static async Task<StunResponse?> BindAsync(int port, string user, string password, int requests = 3)
    {
        var client = new StunClient(SystemNetwork.Instance, new StunClientOptions
        {
            Username = user,
            Password = password,
            ShortTermCredentials = true,
            InitialRto = TimeSpan.FromMilliseconds(200),
            RequestCount = requests,
            LastWaitMultiplier = 1,
        });
        using var timeout = new CancellationTokenSource(Natkit.Deadline);
        return await client.BindingAsync(new IPEndPoint(IPAddress.Loopback, port), cancellationToken: timeout.Token);
    }

    private static async Task AssertAnsweredAsync(int port, string user, string password, int expectedError)
    {
        var response = await BindAsync(port, user, password);
        Assert.NotNull(response);
        Assert.Equal(expectedError, response.ErrorCode);
    }

    [Fact]
    public async Task Sighup_ReloadsUsersAndRateLimit_AndARefusedReloadKeepsTheRunningOnes()
    {
        var users = Path.Combine(_dir, "users");
        var config = Path.Combine(_dir, "stun.yaml");
        await File.WriteAllTextAsync(users, "alice:one\n");
        await File.WriteAllTextAsync(config, $"listen: 127.0.0.1:0\nno-tcp: true\nusers-file: {users}\nrate-limit: 0\n");
        await using var server = await Natkit.StartAsync("Ctrl+C stops", "stun", "serve", "--config", config);
        var port = Natkit.PortAfter(server.Output, "127.0.0.1:");

        await AssertAnsweredAsync(port, "alice", "one", 0);
        await AssertAnsweredAsync(port, "bob", "two", 401);

        // bob added to the users file: answered after SIGHUP, alice still
        await File.WriteAllTextAsync(users, "alice:one\nbob:two\n");
        server.Signal(Natkit.SigHup);
        await server.WaitForOutputAsync("reloaded: 2 user(s)", Natkit.Deadline);
        await AssertAnsweredAsync(port, "bob", "two", 0);
        await AssertAnsweredAsync(port, "alice", "one", 0);

        // alice removed: refused; a rate limit of 1 per second from the config file: most of a burst is dropped
        await File.WriteAllTextAsync(users, "bob:two\n");
        await File.WriteAllTextAsync(config, File.ReadAllText(config).Replace("rate-limit: 0", "rate-limit: 1", StringComparison.Ordinal));
        server.Signal(Natkit.SigHup);
        await server.WaitForOutputAsync("reloaded: 1 user(s), rate limit 1/s", Natkit.Deadline);
        await AssertAnsweredAsync(port, "alice", "one", 401);
        var answered = 0;
        for (var i = 0; i < 6; i++)
        {
            answered += await BindAsync(port, "bob", "two", requests: 1) is null ? 0 : 1;
        }

        Assert.True(answered < 6, "every request of a burst was answered under a 1/s rate limit");

        // a users file that would fail: logged, and the running users and limit stay
        await File.WriteAllTextAsync(config, File.ReadAllText(config).Replace("rate-limit: 1", "rate-limit: 0", StringComparison.Ordinal));
        await File.WriteAllTextAsync(users, "no-colon-here\n");
        server.Signal(Natkit.SigHup);
        await server.WaitForOutputAsync("reload refused", Natkit.Deadline);
        Assert.DoesNotContain("reloaded: 0 user(s)", server.Output, StringComparison.Ordinal);

        Assert.Equal(0, await Natkit.StopAsync(server));
        Assert.Contains("stopped: requests", server.Output, StringComparison.Ordinal);
    }
}
