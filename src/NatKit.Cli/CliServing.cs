using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging;

namespace NatKit.Cli;

/// <summary>
/// The life of a server verb once it listens, one way for `stun serve`, `turn serve`, `proxy serve` and
/// `gateway run`: tell systemd it is ready (READY=1 on $NOTIFY_SOCKET, a Type=notify unit; nothing without it),
/// re-read its settings on SIGHUP, and on SIGINT/SIGTERM return so the verb can drain for at most
/// `--drain-timeout` seconds, print its summary and exit 0.
/// </summary>
internal sealed class CliServing
{
    public Option<double> DrainTimeout { get; } = new("--drain-timeout")
    {
        Description = "Seconds SIGINT/SIGTERM lets open flows (proxy connections and tunnels, TURN allocations, peer pipes) finish " +
                      "after it stops accepting; then the rest are cut (0: at once).",
        DefaultValueFactory = _ => 10,
    };

    public void AddTo(Command command)
    {
        ArgumentNullException.ThrowIfNull(command);
        command.Options.Add(DrainTimeout);
    }

    /// <summary>`--drain-timeout` as a time; refused in one sentence when negative or not finite.</summary>
    public TimeSpan Drain(ParseResult parse)
    {
        ArgumentNullException.ThrowIfNull(parse);
        return Drain(parse.GetValue(DrainTimeout));
    }

    /// <summary>A number of seconds as `--drain-timeout`'s time, refused the same way.</summary>
    public static TimeSpan Drain(double seconds)
    {
        return double.IsFinite(seconds) && seconds is >= 0 and <= 86_400
            ? TimeSpan.FromSeconds(seconds)
            : throw new CliException(string.Create(CultureInfo.InvariantCulture,
                $"--drain-timeout {seconds}: must be 0 to 86400 seconds (0: stop at once)."));
    }

    /// <summary>Tells systemd the server is ready (only once it listens: call this after binding), then waits
    /// for SIGINT, SIGTERM or <paramref name="ct"/>; meanwhile SIGHUP calls <paramref name="reload"/> with the
    /// command line and --config's file as they are now. A reload that fails is logged and the running settings
    /// stay. On return systemd has been told the server is stopping.</summary>
    public static async Task UntilStoppedAsync(ILogger log, Action<ParseResult>? reload, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(log);
        var systemd = new SystemdNotifier();
        using var sighup = reload is null ? null : PosixSignalRegistration.Create(PosixSignal.SIGHUP, context =>
        {
            context.Cancel = true;
            try
            {
                reload(CliRunner.ParseAgain());
            }
            catch (Exception e) when (CliRunner.IsUserError(e))
            {
                log.LogError("reload refused, the running settings stay: {Reason}", e.Message);
            }
        });
        if (systemd.IsEnabled)
        {
            systemd.Notify(ServiceState.Ready);
        }

        await CliRunner.UntilStoppedAsync(ct).ConfigureAwait(false);
        if (systemd.IsEnabled)
        {
            systemd.Notify(ServiceState.Stopping);
        }
    }
}

/// <summary>The operator flags a long-running verb takes together (`turn serve`, `proxy serve`, `peer run`):
/// `--log-level`/`--log-format`, `--metrics-listen` and `--drain-timeout`.</summary>
internal sealed record ServerFlags(CliLogging Logging, CliMetrics Metrics, CliServing Serving)
{
    public static ServerFlags AddTo(Command command)
    {
        var flags = new ServerFlags(new CliLogging(), new CliMetrics(), new CliServing());
        flags.Logging.AddTo(command);
        flags.Metrics.AddTo(command);
        flags.Serving.AddTo(command);
        return flags;
    }
}
