using System.Net;
using NatKit.Traversal.Identity;

namespace NatKit.Traversal.Rendezvous;

/// <summary>What the handler asks its edge to do besides answering the datagram it was given.</summary>
public enum RendezvousOutputKind
{
    /// <summary>Send <see cref="RendezvousOutput.Data"/> to <see cref="RendezvousOutput.Destination"/> from the
    /// service's socket (a request to a node, or its retransmission).</summary>
    Send,

    /// <summary>Write the record <see cref="RendezvousOutput.Data"/> of <see cref="RendezvousOutput.Node"/> to the
    /// shared registry for <see cref="RendezvousOutput.Lifetime"/> (zero: delete it). Only with a shared registry.</summary>
    Store,

    /// <summary>Deliver the Relay message <see cref="RendezvousOutput.Data"/> to the instance
    /// <see cref="RendezvousOutput.Instance"/> (its <see cref="RendezvousHandler.HandleRelay"/>).</summary>
    Relay,
}

/// <summary>One thing for the edge to do (<see cref="RendezvousOutputKind"/>). The data is the handler's to keep
/// alive: the edge may hold it until the action is done.</summary>
public readonly record struct RendezvousOutput(
    RendezvousOutputKind Kind,
    ReadOnlyMemory<byte> Data,
    IPEndPoint? Destination = null,
    string? Instance = null,
    NodeId Node = default,
    TimeSpan Lifetime = default);

/// <summary>
/// What <see cref="RendezvousHandler.Handle"/> made of a datagram: the length of the reply it wrote (0: stay
/// silent), or, with a shared registry, the node it must know about before it can answer: the edge looks that node up
/// and calls <see cref="RendezvousHandler.Handle"/> again with the same datagram and the answer.
/// </summary>
public readonly record struct RendezvousVerdict(int ReplyLength, NodeId Lookup = default)
{
    public bool NeedsLookup => !Lookup.IsEmpty;
}

/// <summary>The shared registry's answer to a <see cref="RendezvousVerdict.Lookup"/>: <see cref="Done"/> with the
/// record, or with null when the node is registered nowhere.</summary>
public readonly record struct RemoteLookup(bool Done, RendezvousRecord? Record)
{
    public static RemoteLookup NotFound => new(true, null);

    public static RemoteLookup Found(RendezvousRecord record) => new(true, record);
}
