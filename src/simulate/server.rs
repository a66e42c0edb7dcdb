//! One model-server replica with continuous batching, shaped after vLLM's scheduler: a
//! waiting queue served first come first served, at most `maxNumSeqs` running requests, a
//! per-step prefill budget of `maxNumBatchedTokens`, and a KV cache of `kvCacheTokens`.
//!
//! Each engine step decodes one token for every running request and prefills the requests
//! admitted in it; its length grows with the batch and the prefilled tokens. As in vLLM, a
//! request is admitted when its prompt fits in the cache (keeping a 1 % watermark free), and
//! when the running requests' next tokens would overflow the cache the most recently admitted
//! one is preempted: it goes back to the head of the queue and later recomputes its prompt
//! and the tokens it had produced.
//!
//! It keeps the counters and histograms vLLM exports, with vLLM's bucket boundaries.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use super::load::Request;
use super::profile::Profile;

/// `vllm:time_to_first_token_seconds` buckets.
pub const TTFT_BUCKETS: [f64; 22] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
/// `vllm:inter_token_latency_seconds` buckets.
pub const ITL_BUCKETS: [f64; 19] = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];

/// A Prometheus histogram: cumulative counts per `le` bound, the last one `+Inf`.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub bounds: &'static [f64],
    pub cumulative: Vec<f64>,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            cumulative: vec![0.0; bounds.len() + 1],
        }
    }

    pub fn observe(&mut self, v: f64, n: u64) {
        let first = self.bounds.partition_point(|b| *b < v);
        for c in &mut self.cumulative[first..] {
            *c += n as f64;
        }
    }
}

/// What a step did for one request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event {
    /// The first token went out `ttft` seconds after the request arrived.
    FirstToken { ttft: f64 },
    /// The last token went out; `itl` is the mean time between output tokens (None for a
    /// single-token answer).
    Finished { ttft: f64, itl: Option<f64> },
}

/// What a preempted request keeps: its first token already went out.
#[derive(Clone, Copy, Debug)]
struct Resumed {
    ttft: f64,
    first_token_clock: f64,
    total_output: u32,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    req: Request,
    resumed: Option<Resumed>,
}

#[derive(Clone, Copy, Debug)]
struct Running {
    id: u64,
    arrival: f64,
    output: u32,
    prompt: u32,
    start_step: u64,
    first_token_clock: f64,
    ttft: f64,
    resumed: Option<Resumed>,
}

#[derive(Clone, Debug)]
pub struct Server {
    max_seqs: u32,
    budget: u32,
    kv_capacity: u64,
    step_ms: f64,
    per_seq_ms: f64,
    prefill_ms: f64,
    waiting: VecDeque<Pending>,
    slots: Vec<Option<Running>>,
    free: Vec<usize>,
    /// (last step, slot, request id); entries of preempted requests are skipped by id.
    finish: BinaryHeap<Reverse<(u64, usize, u64)>>,
    /// Running requests in admission order (slot, id), for preempting the newest.
    order: VecDeque<(usize, u64)>,
    next_id: u64,
    admitted: Vec<usize>,
    running: u32,
    decoders: u32,
    steps: u64,
    sum_prompt: u64,
    sum_start: u64,
    /// Prompt tokens of the requests being prefilled in the current step.
    prefilling: u64,
    /// Sum of all step lengths so far: a request's mean inter-token latency is the
    /// difference of this clock between its first and last token over its tokens.
    clock: f64,
    step_len: f64,
    /// End of the step in progress; None when idle.
    pub busy_until: Option<f64>,
    pub generation_tokens: u64,
    pub prompt_tokens: u64,
    pub busy_seconds: f64,
    pub ttft: Histogram,
    pub itl: Histogram,
}

impl Server {
    pub fn new(p: &Profile) -> Server {
        Server {
            max_seqs: p.max_num_seqs,
            budget: p.max_num_batched_tokens,
            kv_capacity: p.kv_cache_tokens,
            step_ms: p.decode_step_ms,
            per_seq_ms: p.decode_step_per_seq_ms,
            prefill_ms: p.prefill_ms_per_token,
            waiting: VecDeque::new(),
            slots: Vec::new(),
            free: Vec::new(),
            finish: BinaryHeap::new(),
            order: VecDeque::new(),
            next_id: 0,
            admitted: Vec::new(),
            running: 0,
            decoders: 0,
            steps: 0,
            sum_prompt: 0,
            sum_start: 0,
            prefilling: 0,
            clock: 0.0,
            step_len: 0.0,
            busy_until: None,
            generation_tokens: 0,
            prompt_tokens: 0,
            busy_seconds: 0.0,
            ttft: Histogram::new(&TTFT_BUCKETS),
            itl: Histogram::new(&ITL_BUCKETS),
        }
    }

    /// Whether a request this large can ever be admitted (vLLM rejects a prompt longer than
    /// the model's context; here, one that cannot fit in the cache).
    pub fn fits(&self, r: &Request) -> bool {
        u64::from(r.prompt) + u64::from(r.output) <= self.kv_capacity
    }

    pub fn enqueue(&mut self, now: f64, r: Request) {
        self.waiting.push_back(Pending {
            req: r,
            resumed: None,
        });
        if self.busy_until.is_none() {
            self.start_step(now);
        }
    }

    /// `vllm:num_requests_running`.
    pub fn running(&self) -> u32 {
        self.running
    }

    /// `vllm:num_requests_waiting`.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// `vllm:kv_cache_usage_perc` (0..1): tokens held by running requests over capacity.
    pub fn kv_usage(&self) -> f64 {
        (self.held() as f64 / self.kv_capacity as f64).min(1.0)
    }

    /// Tokens in the cache: prompts being prefilled, and every decoding request's prompt and
    /// the tokens it produced so far.
    fn held(&self) -> u64 {
        let n = u64::from(self.running - self.admitted.len() as u32);
        self.prefilling + self.sum_prompt + n * self.steps - self.sum_start.min(n * self.steps)
    }

    /// Takes the most recently admitted running request out and queues it first again.
    fn preempt_newest(&mut self) -> bool {
        while let Some((slot, id)) = self.order.pop_back() {
            let Some(r) = self.slots[slot].filter(|r| r.id == id) else {
                continue;
            };
            self.slots[slot] = None;
            self.free.push(slot);
            self.running -= 1;
            self.sum_prompt -= u64::from(r.prompt);
            self.sum_start -= r.start_step;
            let produced = u32::try_from(self.steps - r.start_step).unwrap_or(u32::MAX);
            let resumed = r.resumed.unwrap_or(Resumed {
                ttft: r.ttft,
                first_token_clock: r.first_token_clock,
                total_output: r.output,
            });
            self.waiting.push_front(Pending {
                req: Request {
                    arrival: r.arrival,
                    prompt: r.prompt.saturating_add(produced),
                    output: r.output.saturating_sub(produced).max(1),
                },
                resumed: Some(resumed),
            });
            return true;
        }
        false
    }

    pub fn idle(&self) -> bool {
        self.running == 0 && self.waiting.is_empty()
    }

    fn start_step(&mut self, now: f64) {
        // Every decoding request needs room for its next token.
        while self.running > 1 && self.held() + u64::from(self.running) > self.kv_capacity {
            if !self.preempt_newest() {
                break;
            }
        }
        self.decoders = self.running;
        let budget = self.budget.saturating_sub(self.decoders);
        let limit = self.kv_capacity - self.kv_capacity / 100;
        let mut prefill: u64 = 0;
        while let Some(p) = self.waiting.front() {
            let prompt = u64::from(p.req.prompt);
            let within_budget = prefill + prompt <= u64::from(budget) || self.admitted.is_empty();
            let room = self.held() + u64::from(self.decoders) + prefill + prompt <= limit
                || self.running == 0;
            if self.running >= self.max_seqs || !room || !within_budget {
                break;
            }
            let Some(p) = self.waiting.pop_front() else {
                break;
            };
            let r = p.req;
            prefill += u64::from(r.prompt);
            self.next_id += 1;
            let run = Running {
                id: self.next_id,
                arrival: r.arrival,
                output: r.output,
                prompt: r.prompt,
                start_step: self.steps,
                first_token_clock: p.resumed.map_or(0.0, |x| x.first_token_clock),
                ttft: p.resumed.map_or(0.0, |x| x.ttft),
                resumed: p.resumed,
            };
            let slot = match self.free.pop() {
                Some(i) => {
                    self.slots[i] = Some(run);
                    i
                }
                None => {
                    self.slots.push(Some(run));
                    self.slots.len() - 1
                }
            };
            self.admitted.push(slot);
            self.order.push_back((slot, self.next_id));
            self.running += 1;
        }
        if self.running == 0 {
            self.busy_until = None;
            return;
        }
        let batch = f64::from(self.running);
        self.step_len =
            (self.step_ms + self.per_seq_ms * (batch - 1.0) + self.prefill_ms * prefill as f64)
                / 1000.0;
        self.prompt_tokens += prefill;
        self.prefilling = prefill;
        self.busy_until = Some(now + self.step_len);
    }

    /// Ends the step in progress at `now` (its `busy_until`), reports answered requests
    /// through `done`, and starts the next step if there is work.
    pub fn finish_step(&mut self, now: f64, report: &mut impl FnMut(Event)) {
        let len = self.step_len;
        let this_step = self.steps;
        self.clock += len;
        self.busy_seconds += len;
        if self.decoders > 0 {
            self.generation_tokens += u64::from(self.decoders);
            self.itl.observe(len, u64::from(self.decoders));
        }
        for slot in std::mem::take(&mut self.admitted) {
            if let Some(r) = self.slots[slot].as_mut() {
                self.generation_tokens += 1;
                if r.resumed.is_none() {
                    r.first_token_clock = self.clock;
                    r.ttft = now - r.arrival;
                    self.ttft.observe(r.ttft, 1);
                    report(Event::FirstToken { ttft: r.ttft });
                } else {
                    self.itl.observe(len, 1);
                }
                self.sum_prompt += u64::from(r.prompt);
                self.sum_start += r.start_step;
                let last = this_step + u64::from(r.output.max(1)) - 1;
                self.finish.push(Reverse((last, slot, r.id)));
            }
        }
        self.prefilling = 0;
        self.steps += 1;
        while let Some(Reverse((last, slot, id))) = self.finish.peek().copied() {
            if last > this_step {
                break;
            }
            self.finish.pop();
            if let Some(r) = self.slots[slot].filter(|r| r.id == id) {
                self.slots[slot] = None;
                self.free.push(slot);
                self.running -= 1;
                self.sum_prompt -= u64::from(r.prompt);
                self.sum_start -= r.start_step;
                let total = r.resumed.map_or(r.output, |x| x.total_output);
                let itl =
                    (total > 1).then(|| (self.clock - r.first_token_clock) / f64::from(total - 1));
                report(Event::Finished { ttft: r.ttft, itl });
            }
        }
        while let Some(&(slot, id)) = self.order.front() {
            if self.slots[slot].is_some_and(|r| r.id == id) {
                break;
            }
            self.order.pop_front();
        }
        self.start_step(now);
    }

    /// Drops everything still queued or running (a pod killed at the end of its grace
    /// period); returns how many requests were lost. Counters stay, as a dying exporter's do.
    pub fn abort(&mut self) -> usize {
        let lost = self.waiting.len() + self.running as usize;
        self.waiting.clear();
        self.slots.clear();
        self.free.clear();
        self.finish.clear();
        self.order.clear();
        self.admitted.clear();
        self.running = 0;
        self.decoders = 0;
        self.sum_prompt = 0;
        self.sum_start = 0;
        self.prefilling = 0;
        self.busy_until = None;
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(max_seqs: u32, kv: u64) -> Profile {
        Profile {
            name: "t".into(),
            source: "unit test".into(),
            max_num_seqs: max_seqs,
            max_num_batched_tokens: 8192,
            kv_cache_tokens: kv,
            decode_step_ms: 10.0,
            decode_step_per_seq_ms: 1.0,
            prefill_ms_per_token: 0.1,
            startup_seconds: 0.0,
            prompt_tokens: 100,
            output_tokens: 5,
            idle_watts: 0.0,
            busy_watts: 0.0,
            custom_signal: None,
        }
    }

    fn req(arrival: f64) -> Request {
        Request {
            arrival,
            prompt: 100,
            output: 5,
        }
    }

    fn drain(s: &mut Server) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(end) = s.busy_until {
            s.finish_step(end, &mut |e| events.push(e));
        }
        events
    }

    #[test]
    fn a_lone_request_pays_prefill_once_then_one_step_per_token() {
        let mut s = Server::new(&profile(8, 10_000));
        s.enqueue(0.0, req(0.0));
        let events = drain(&mut s);
        // Prefill step: 10 ms + 100 tokens * 0.1 ms = 20 ms; then 4 decode steps of 10 ms.
        let Event::FirstToken { ttft } = events[0] else {
            panic!("{events:?}")
        };
        assert!((ttft - 0.020).abs() < 1e-12, "{ttft}");
        let Event::Finished { itl: Some(itl), .. } = events[1] else {
            panic!("{events:?}")
        };
        assert!((itl - 0.010).abs() < 1e-12, "{itl}");
        assert_eq!((s.generation_tokens, s.prompt_tokens), (5, 100));
        assert!((s.busy_seconds - 0.060).abs() < 1e-12);
        assert!(s.idle());
        // One TTFT observation in the (0.01, 0.02] bucket, four ITL ones at <= 0.01.
        assert_eq!(s.ttft.cumulative[2], 0.0);
        assert_eq!(s.ttft.cumulative[3], 1.0);
        assert_eq!(s.itl.cumulative[0], 4.0);
    }

    #[test]
    fn batch_size_and_kv_cache_cap_admission() {
        // An idle engine starts a step with the first request; the others wait for the next.
        let mut s = Server::new(&profile(2, 10_000));
        for _ in 0..4 {
            s.enqueue(0.0, req(0.0));
        }
        assert_eq!((s.running(), s.waiting()), (1, 3));
        s.finish_step(0.02, &mut |_| {});
        assert_eq!((s.running(), s.waiting()), (2, 2));
        // 250 tokens hold two requests of 100 + 5 but not three.
        let mut s = Server::new(&profile(8, 250));
        for _ in 0..4 {
            s.enqueue(0.0, req(0.0));
        }
        s.finish_step(0.02, &mut |_| {});
        assert_eq!((s.running(), s.waiting()), (2, 2));
        // The first request holds its prompt and one token, the second its prompt.
        assert!(
            (s.kv_usage() - 201.0 / 250.0).abs() < 1e-12,
            "{}",
            s.kv_usage()
        );
        let events = drain(&mut s);
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, Event::Finished { .. }))
                .count(),
            4
        );
    }

    #[test]
    fn a_bigger_batch_makes_every_step_slower() {
        let mut s = Server::new(&profile(8, 10_000));
        s.enqueue(0.0, req(0.0));
        s.enqueue(0.0, req(0.0));
        s.enqueue(0.0, req(0.0));
        let events = drain(&mut s);
        // Step 1 prefills the first request (20 ms). Step 2 decodes it and prefills the
        // other two together: 10 + 2 * 1 + 200 * 0.1 = 32 ms, so they see TTFT 52 ms.
        let ttfts: Vec<f64> = events
            .iter()
            .filter_map(|e| match e {
                Event::FirstToken { ttft } => Some(*ttft),
                _ => None,
            })
            .collect();
        assert_eq!(ttfts.len(), 3);
        assert!(
            (ttfts[0] - 0.020).abs() < 1e-12 && (ttfts[1] - 0.052).abs() < 1e-12,
            "{ttfts:?}"
        );
        // Their next tokens: three steps of 12 ms beside the first request (batch 3), then
        // one of 11 ms once it has finished: (3 * 12 + 11) / 4 = 11.75 ms.
        let Some(Event::Finished { itl: Some(itl), .. }) = events.last() else {
            panic!("{events:?}")
        };
        assert!((itl - 0.01175).abs() < 1e-12, "{itl}");
    }

    #[test]
    fn a_full_cache_preempts_the_newest_request_which_resumes_later() {
        // 210 tokens: A (100 + 10) is admitted, then B's prompt fits beside it; at the sixth
        // step A and B hold 105 + 104 = 209 and need two more, so B goes back to the queue.
        let mut s = Server::new(&profile(8, 210));
        let r = Request {
            arrival: 0.0,
            prompt: 100,
            output: 10,
        };
        s.enqueue(0.0, r);
        s.enqueue(0.0, r);
        for _ in 0..5 {
            let end = s.busy_until.unwrap();
            s.finish_step(end, &mut |_| {});
        }
        assert_eq!((s.running(), s.waiting()), (1, 1));
        let events = drain(&mut s);
        // Each answer once, each first token once, and B's mean ITL includes its pause.
        let finished: Vec<Option<f64>> = events
            .iter()
            .filter_map(|e| match e {
                Event::Finished { itl, .. } => Some(*itl),
                _ => None,
            })
            .collect();
        assert_eq!(finished.len(), 2);
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, Event::FirstToken { .. }))
                .count(),
            0
        );
        // A: 21 ms (B's prefill) + 3 * 11 ms + 5 * 10 ms alone, over 9 gaps. B: the same first
        // 3 * 11 ms, then waits out A's 5 steps, recomputes 104 tokens (20.4 ms) and decodes 5
        // more alone.
        let (a, b) = (finished[0].unwrap(), finished[1].unwrap());
        assert!((a - 0.104 / 9.0).abs() < 1e-12, "{a}");
        assert!(
            (b - (0.033 + 0.050 + 0.0204 + 0.050) / 9.0).abs() < 1e-12,
            "{b}"
        );
        assert_eq!(s.generation_tokens, 20);
        assert!(s.idle());
    }

    #[test]
    fn abort_loses_what_was_queued_or_running() {
        let mut s = Server::new(&profile(1, 10_000));
        s.enqueue(0.0, req(0.0));
        s.enqueue(0.0, req(0.0));
        assert_eq!(s.abort(), 2);
        assert!(s.idle() && s.busy_until.is_none());
    }
}
