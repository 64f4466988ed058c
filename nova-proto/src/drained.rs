//! What a queue keeps once it empties: one rule for the core's queues and
//! the drivers' event queues.

use std::collections::VecDeque;

/// `queue` just emptied, having held at most `*peak` items since it was last
/// empty: keeps its buffer for bursts like the last one (a steady flow never
/// regrows it: growth doubles, so its capacity is at most twice the peak),
/// frees what a past burst left once a smaller batch shows it is over, and
/// frees it all after a batch of one or two. An idle connection, one of
/// thousands, then holds no buffer; one that queues an item or two at a
/// time (a ping-pong) regrows it in one allocation, cheap next to the I/O
/// around it. Resets `*peak` for the next batch.
pub fn shrink_drained<T>(queue: &mut VecDeque<T>, peak: &mut usize) {
    debug_assert!(queue.is_empty(), "shrink_drained on a queue holding items");
    let keep = if *peak <= 2 { 0 } else { *peak };
    if queue.capacity() > 2 * keep {
        queue.shrink_to(keep);
    }
    *peak = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(queue: &mut VecDeque<u32>, peak: &mut usize, n: u32) {
        for i in 0..n {
            queue.push_back(i);
            *peak = (*peak).max(queue.len());
        }
        queue.clear();
        shrink_drained(queue, peak);
    }

    #[test]
    fn steady_batches_keep_the_buffer_a_trickle_frees_it() {
        let (mut q, mut peak) = (VecDeque::new(), 0);
        batch(&mut q, &mut peak, 1000);
        let kept = q.capacity();
        assert!(kept >= 1000);
        for _ in 0..5 {
            batch(&mut q, &mut peak, 1000);
            assert_eq!(q.capacity(), kept, "a steady flow never regrows it");
        }
        // A smaller batch after the burst gives back what it does not need.
        batch(&mut q, &mut peak, 100);
        assert!(q.capacity() >= 100 && q.capacity() <= 200, "{}", q.capacity());
        // One or two at a time: nothing is kept.
        batch(&mut q, &mut peak, 2);
        assert_eq!(q.capacity(), 0);
        assert_eq!(peak, 0);
    }
}
