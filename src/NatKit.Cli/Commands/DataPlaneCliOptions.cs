using System.CommandLine;
using NatKit.Linux;

namespace NatKit.Cli.Commands;

/// <summary>The gateway data plane's tuning options, shared by `natkit gateway run` and `natkit bench gateway`.</summary>
internal sealed class DataPlaneCliOptions
{
    public Option<int> Realtime { get; } = new("--realtime")
    {
        Description = "SCHED_FIFO priority (1-99) of the data-plane thread while it waits for packets (fast wake-ups); 0 = normal scheduling.",
        DefaultValueFactory = _ => DataPlaneOptions.Default.RealtimePriority,
    };

    public Option<int> BatchPause { get; } = new("--batch-pause-us")
    {
        Description = "Microseconds the data plane sleeps between batches while traffic flows (fewer wake-ups, bigger batches); 0 = none.",
        DefaultValueFactory = _ => (int)DataPlaneOptions.Default.BatchPause.TotalMicroseconds,
    };

    public DataPlaneOptions Read(ParseResult parse)
    {
        var options = new DataPlaneOptions
        {
            RealtimePriority = parse.GetValue(Realtime),
            BatchPause = TimeSpan.FromMicroseconds(parse.GetValue(BatchPause)),
        };
        return options.Validate() is { } problem ? throw new CliException(problem) : options;
    }
}
