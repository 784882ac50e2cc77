namespace NatKit.TestSupport;

/// <summary>Collects formatted log lines by event id.</summary>
public sealed class ListLogger : Microsoft.Extensions.Logging.ILogger
{
    private readonly System.Collections.Concurrent.ConcurrentQueue<(int EventId, string Line)> _lines = new();

    private readonly System.Collections.Concurrent.ConcurrentDictionary<int, TaskCompletionSource> _logged = new();

    public IReadOnlyList<string> Lines(int eventId) => _lines.Where(l => l.EventId == eventId).Select(l => l.Line).ToList();

    /// <summary>Completes when a line with <paramref name="eventId"/> has been logged.</summary>
    public Task WhenLogged(int eventId) => Logged(eventId).Task;

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

    public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId,
        TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        _lines.Enqueue((eventId.Id, formatter(state, exception)));
        Logged(eventId.Id).TrySetResult();
    }

    private TaskCompletionSource Logged(int eventId) =>
        _logged.GetOrAdd(eventId, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
}
