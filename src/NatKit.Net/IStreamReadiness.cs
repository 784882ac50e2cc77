namespace NatKit.Net;

/// <summary>
/// Optional capability of an <see cref="IStreamConnection"/>: whether a read would return at once (bytes waiting,
/// the peer's end of stream, or an error), asked without reading. A pool asks an idle connection before reusing it:
/// one that became readable while nobody was waiting on it was most likely closed by the server.
/// <see cref="SystemNetwork"/>'s TCP connections offer it.
/// </summary>
public interface IStreamReadiness
{
    /// <summary>True when a read would not block; an error reading the state counts as true.</summary>
    bool ReadWouldNotBlock { get; }
}
