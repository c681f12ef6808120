// The question page: ask, list the documents, read one document with a cited span highlighted.
//
// Everything the API returns is data, never markup: it reaches the page only through textContent and
// createTextNode (the el() helper below), never innerHTML. Views are chosen by the URL hash:
//   #/                                  ask
//   #/documents                         the indexed documents
//   #/document?id=ID&start=S&end=E      one document, characters S..E highlighted
"use strict";

(function () {
  const ASK_TOP_K = 5;
  const REQUEST_TIMEOUT_MS = 120000;
  const PASSAGE_CLAMP_CHARS = 320; // longer passages start collapsed, with a button to show all
  const DOC_LIST_LIMIT = 500; // documents drawn at once; the filter narrows the rest
  const DOC_PAGES = 20; // pages of 1,000 documents the page fetches at most

  const $ = (id) => document.getElementById(id);
  const numberFormat = new Intl.NumberFormat();

  // ------------------------------------------------------------------------------------------ helpers

  /** An element with attributes and children; strings become text nodes, so they are never parsed. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  function clear(node) {
    node.replaceChildren();
  }

  // The API counts offsets in Unicode code points (Python strings); JavaScript strings count UTF-16
  // units. They differ only when the text holds characters outside the BMP (emoji and the like).
  const ASTRAL = /[\uD800-\uDFFF]/;

  /** Split text at code-point offsets [start, end) into before / inside / after, or null when out of range. */
  function splitAt(text, start, end) {
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end <= start) return null;
    if (!ASTRAL.test(text)) {
      if (end > text.length) return null;
      return [text.slice(0, start), text.slice(start, end), text.slice(end)];
    }
    const points = Array.from(text);
    if (end > points.length) return null;
    return [points.slice(0, start).join(""), points.slice(start, end).join(""), points.slice(end).join("")];
  }

  /** Text with the span [start, end) wrapped in <mark>; the whole text unmarked when the span does not fit. */
  function highlighted(text, start, end, markAttrs) {
    const parts = splitAt(text, start, end);
    if (!parts) return [document.createTextNode(text)];
    return [document.createTextNode(parts[0]), el("mark", markAttrs || {}, parts[1]), document.createTextNode(parts[2])];
  }

  function percent(score) {
    return Math.round(Math.max(0, Math.min(1, Number(score) || 0)) * 100) + "%";
  }

  function formatMs(ms) {
    const n = Number(ms);
    if (!Number.isFinite(n)) return "";
    return n >= 1000 ? (n / 1000).toFixed(2) + " s" : Math.round(n) + " ms";
  }

  function plural(n, one, many) {
    return numberFormat.format(n) + " " + (n === 1 ? one : many);
  }

  function documentHref(id, start, end) {
    const params = new URLSearchParams({ id: String(id) });
    if (Number.isInteger(start) && Number.isInteger(end)) {
      params.set("start", String(start));
      params.set("end", String(end));
    }
    return "#/document?" + params.toString();
  }

  /** A URL from the API as a link target only when it is plainly http(s); anything else stays text. */
  function safeUrl(value) {
    try {
      const url = new URL(String(value));
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (_) {
      return null;
    }
  }

  // ------------------------------------------------------------------------------------------ HTTP

  class ApiProblem extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  /** JSON from the API, or an ApiProblem that says politely what went wrong. */
  async function api(path, options) {
    const controller = new AbortController();
    const outer = options && options.signal;
    if (outer) {
      if (outer.aborted) controller.abort();
      outer.addEventListener("abort", () => controller.abort(), { once: true });
    }
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, REQUEST_TIMEOUT_MS);
    let response;
    try {
      response = await fetch(path, { ...options, signal: controller.signal, headers: { Accept: "application/json", ...((options && options.headers) || {}) } });
    } catch (err) {
      clearTimeout(timer);
      if (outer && outer.aborted) throw err; // superseded by a newer request: not a failure to report
      if (timedOut) throw new ApiProblem(0, "timeout", "The service took too long to answer. Please try again.");
      throw new ApiProblem(0, "network", "Could not reach the service. Check your connection and that the service is running, then try again.");
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    } finally {
      clearTimeout(timer);
    }
    if (response.ok && body !== null) return body;
    const error = body && typeof body === "object" && body.error && typeof body.error === "object" ? body.error : {};
    const code = typeof error.code === "string" ? error.code : "";
    const detail = typeof error.message === "string" ? error.message : "";
    throw new ApiProblem(response.status, code, describeProblem(response.status, detail));
  }

  function describeProblem(status, detail) {
    const more = detail ? " (" + detail + ")" : "";
    if (status === 422) return "That request could not be processed: " + (detail || "the input is not valid") + ".";
    if (status === 503) return "The service is busy or still starting up. Please try again in a moment." + more;
    if (status === 404) return "Not found" + (detail ? ": " + detail : ".");
    if (status === 413) return "That question is too long.";
    if (status >= 500) return "Something went wrong on the server. Please try again." + more;
    return "The request failed (HTTP " + status + ")." + more;
  }

  function showError(box, err) {
    clear(box);
    const message = err instanceof ApiProblem ? err.message : "Something unexpected went wrong. Please try again.";
    box.append(el("p", {}, message));
    show(box, true);
    if (!(err instanceof ApiProblem)) console.error(err);
  }

  // ------------------------------------------------------------------------------------------ views

  const views = Array.from(document.querySelectorAll("[data-view]"));
  const memory = {}; // view -> {scroll, focus}: restored when coming back
  let current = null;
  let inAppNavigations = 0; // when > 0, "Back" can use the browser history

  function parseHash() {
    const hash = location.hash || "#/";
    if (!hash.startsWith("#/")) return null; // in-page anchors such as the skip link
    const [path, query] = hash.slice(2).split("?");
    return { name: path || "ask", params: new URLSearchParams(query || "") };
  }

  function route(initial) {
    const parsed = parseHash();
    if (!parsed) return;
    const name = ["ask", "documents", "document"].includes(parsed.name) ? parsed.name : "ask";
    if (current && current !== name) {
      memory[current] = { scroll: window.scrollY, focus: document.activeElement };
    }
    const previous = current;
    current = name;
    for (const view of views) show(view, view.dataset.view === name);
    for (const link of document.querySelectorAll("[data-nav]")) {
      if (link.dataset.nav === name) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    if (name === "document") {
      openDocument(parsed.params);
      return;
    }
    if (name === "documents") {
      document.title = "Documents · Ask the articles";
      loadDocuments();
    } else {
      document.title = "Ask the articles";
    }
    const saved = memory[name];
    if (initial) {
      if (name === "ask") $("question").focus();
      else $(name === "documents" ? "docs-heading" : "ask-heading").focus();
    } else if (saved && saved.focus && saved.focus !== document.body && document.contains(saved.focus)) {
      saved.focus.focus({ preventScroll: true });
      window.scrollTo(0, saved.scroll);
    } else if (previous !== name) {
      $(name === "documents" ? "docs-heading" : "ask-heading").focus();
      window.scrollTo(0, 0);
    }
  }

  window.addEventListener("hashchange", () => {
    inAppNavigations += 1;
    route(false);
  });

  // ------------------------------------------------------------------------------------------ ask

  let askController = null;

  async function ask(question) {
    if (askController) askController.abort(); // a newer question replaces the one in flight
    const controller = new AbortController();
    askController = controller;

    const results = $("results");
    const status = $("ask-status");
    const errorBox = $("ask-error");
    show(errorBox, false);
    results.setAttribute("aria-busy", "true");
    results.classList.add("stale");
    $("ask-form").classList.add("loading");
    status.className = "status loading";
    status.textContent = "Searching the articles…";

    try {
      const body = await api("/ask", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(askBody(question)),
        signal: controller.signal,
      });
      if (askController !== controller) return;
      renderResults(body);
      status.className = "status";
      status.textContent = summary(body);
    } catch (err) {
      if (askController !== controller) return;
      status.className = "status";
      status.textContent = "";
      clear(results);
      show(results, false);
      showError(errorBox, err);
    } finally {
      if (askController === controller) {
        askController = null;
        results.setAttribute("aria-busy", "false");
        results.classList.remove("stale");
        $("ask-form").classList.remove("loading");
      }
    }
  }

  function summary(body) {
    const answers = Array.isArray(body.answers) ? body.answers : [];
    if (body.no_answer || !answers.length) return "Not in the articles.";
    return "Answer: " + answers[0].text + " (" + percent(answers[0].score) + " confidence).";
  }

  function citation(answer) {
    const start = answer.document_offset.start;
    const end = answer.document_offset.end;
    return el(
      "p",
      { class: "cite" },
      el("span", { class: "cite-label" }, "Source: "),
      el("a", { href: documentHref(answer.document_id, start, end), class: "cite-link" }, answer.title || answer.document_id),
      el(
        "span",
        { class: "cite-meta" },
        el("span", { class: "doc-id" }, answer.document_id),
        " · characters " + numberFormat.format(start) + "–" + numberFormat.format(end),
        pageLabel(answer.page)
      )
    );
  }

  /** " · p. N" for an answer or passage in a PDF (page from 1), nothing for other documents. */
  function pageLabel(page) {
    return Number.isInteger(page) ? el("span", { class: "page" }, " · p. " + numberFormat.format(page)) : null;
  }

  /** The answer's sentence with the answer marked, or (from a service without sentences) its passage. */
  function sentenceNodes(a) {
    const so = a.sentence_offset;
    if (typeof a.sentence === "string" && so && Number.isInteger(so.start)) {
      return highlighted(a.sentence, a.document_offset.start - so.start, a.document_offset.end - so.start);
    }
    return highlighted(a.context, a.context_offset.start, a.context_offset.end);
  }

  /** The passage the answer was read from, folded away until asked for. */
  function passageDetails(a) {
    return el(
      "details",
      { class: "answer-passage" },
      el("summary", {}, "Show the passage"),
      el("p", { class: "context" }, highlighted(a.context, a.context_offset.start, a.context_offset.end))
    );
  }

  function confidence(score, big) {
    const bar = el("span", { class: "bar", "aria-hidden": "true" }, el("span", { class: "bar-fill" }));
    bar.firstChild.style.width = percent(score);
    return el("p", { class: big ? "confidence big" : "confidence" }, bar, el("span", {}, percent(score) + " confidence"));
  }

  /** Why there is no answer, in words, from the titles of the passages actually read. */
  function noAnswerText(body, passages) {
    if (!passages.length || body.no_answer_reason === "not_covered") {
      return "Nothing in the indexed articles is about this question.";
    }
    const titles = [...new Set(passages.map((p) => p.title || p.document_id))].slice(0, 2);
    const named = titles.map((t) => "\u201c" + t + "\u201d").join(" and ");
    return (
      "The articles touch on this (" + named + ") but the passages read do not say it with enough confidence. " +
      "The passages that were searched are listed below."
    );
  }

  /** The threshold an answer needed, and (on hover) the rule that set it. */
  function thresholdNote(body) {
    if (typeof body.threshold !== "number") return null;
    return el(
      "p",
      { class: "threshold-note", title: body.threshold_rule || "" },
      "Answers need a score of at least " + percent(body.threshold) + "."
    );
  }

  /** One answer after the first (label "confidence"), or a possible answer below the threshold ("unconfirmed"). */
  function otherAnswer(a, label) {
    return el(
      "li",
      { class: label === "unconfirmed" ? "other-answer unconfirmed" : "other-answer" },
      el("p", { class: "other-text" }, el("strong", {}, a.text), el("span", { class: "score" }, label === "unconfirmed" ? " · score " + percent(a.score) + ", unconfirmed" : " · " + percent(a.score) + " confidence")),
      el("p", { class: "other-context" }, sentenceNodes(a)),
      passageDetails(a),
      citation(a)
    );
  }


  // ------------------------------------------------------------------------------------------ feedback

  /** POST /feedback, then say so in ``box`` (how many questions have been annotated, or what went wrong). */
  async function sendFeedback(box, payload) {
    box.textContent = "Sending…";
    box.className = "feedback-status";
    try {
      const body = await api("/feedback", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(payload),
      });
      box.textContent = "Thank you: saved (" + plural(body.questions, "question", "questions") + " annotated so far).";
      box.className = "feedback-status done";
    } catch (err) {
      box.textContent = err.message || "Could not save the feedback.";
      box.className = "feedback-status failed";
    }
  }

  function spanOf(a) {
    return { document_id: a.document_id, start: a.document_offset.start, end: a.document_offset.end };
  }

  /** "Was this right?" under an answer: right / wrong on the span shown. */
  function answerFeedback(question, a) {
    const box = el("span", { class: "feedback-status", role: "status" });
    const send = (verdict) => sendFeedback(box, { question, verdict, shown: { ...spanOf(a), score: a.score } });
    return el(
      "p",
      { class: "feedback", id: "answer-feedback" },
      "Was this right? ",
      el("button", { type: "button", class: "feedback-button", onclick: () => send("right") }, "Right"),
      el("button", { type: "button", class: "feedback-button", onclick: () => send("wrong") }, "Wrong"),
      " ",
      box
    );
  }

  /** Under "Not in the articles": agree, or point at the answer in a passage below. */
  function noAnswerFeedback(question) {
    const box = el("span", { class: "feedback-status", role: "status" });
    return el(
      "p",
      { class: "feedback", id: "no-answer-feedback" },
      el(
        "button",
        { type: "button", class: "feedback-button", onclick: () => sendFeedback(box, { question, verdict: "not_in_articles" }) },
        "Correct, it is not in the articles"
      ),
      " or select the answer in a passage below and press “This is the answer”. ",
      box
    );
  }

  /** Characters of ``container``'s text before (``node``, ``offset``): a DOM position as a string offset. */
  function textOffset(container, node, offset) {
    const range = document.createRange();
    range.selectNodeContents(container);
    range.setEnd(node, offset);
    return range.toString().length;
  }

  /** "This is the answer" under a passage: the words selected in it, as offsets into its document. */
  function passageFeedback(question, p, textNode) {
    const box = el("span", { class: "feedback-status", role: "status" });
    const pick = () => {
      const selection = window.getSelection();
      if (!selection || selection.rangeCount === 0 || selection.isCollapsed) {
        box.textContent = "Select the words that answer the question in this passage first.";
        box.className = "feedback-status failed";
        return;
      }
      const range = selection.getRangeAt(0);
      if (!textNode.contains(range.startContainer) || !textNode.contains(range.endContainer)) {
        box.textContent = "Select words inside this passage.";
        box.className = "feedback-status failed";
        return;
      }
      const from = textOffset(textNode, range.startContainer, range.startOffset);
      const to = textOffset(textNode, range.endContainer, range.endOffset);
      const base = p.document_offset.start;
      sendFeedback(box, { question, verdict: "answer_is", answer: { document_id: p.document_id, start: base + from, end: base + to } });
    };
    return el(
      "p",
      { class: "feedback passage-feedback" },
      el("button", { type: "button", class: "feedback-button", onclick: pick }, "This is the answer"),
      " ",
      box
    );
  }

  function renderResults(body) {
    const results = $("results");
    clear(results);
    const answers = Array.isArray(body.answers) ? body.answers : [];
    const passages = Array.isArray(body.passages) ? body.passages : [];

    results.append(el("p", { class: "asked" }, "Results for ", el("q", {}, body.question)));

    if (body.no_answer || !answers.length) {
      const possible = Array.isArray(body.possible_answers) ? body.possible_answers : [];
      results.append(
        el(
          "div",
          { class: "card not-found", id: "not-found" },
          el("h2", {}, "Not in the articles"),
          el("p", { id: "no-answer-reason" }, noAnswerText(body, passages)),
          thresholdNote(body),
          noAnswerFeedback(body.question)
        )
      );
      if (possible.length) {
        results.append(
          el(
            "section",
            { class: "more-answers possible-answers", "aria-labelledby": "possible-heading" },
            el("h2", { id: "possible-heading" }, "Came close, not confirmed"),
            el(
              "p",
              { class: "possible-note" },
              "These spans scored below the threshold: the passages may not say what was asked. Read the sentence before trusting one."
            ),
            el("ol", { class: "answer-list" }, possible.map((a) => otherAnswer(a, "unconfirmed")))
          )
        );
      }
    } else {
      const top = answers[0];
      results.append(
        el(
          "article",
          { class: "card answer", id: "top-answer", "aria-labelledby": "top-answer-heading" },
          el("h2", { id: "top-answer-heading", class: "eyebrow" }, "Answer"),
          el("p", { class: "answer-text" }, top.text),
          confidence(top.score, true),
          thresholdNote(body),
          el("blockquote", { class: "sentence" }, sentenceNodes(top)),
          passageDetails(top),
          citation(top),
          answerFeedback(body.question, top)
        )
      );
      if (answers.length > 1) {
        results.append(
          el(
            "section",
            { class: "more-answers", "aria-labelledby": "more-answers-heading" },
            el("h2", { id: "more-answers-heading" }, "Other possible answers"),
            el(
              "ol",
              { class: "answer-list" },
              answers.slice(1).map((a) => otherAnswer(a, "confidence"))
            )
          )
        );
      }
    }

    if (passages.length) {
      results.append(
        el(
          "section",
          { class: "passages", "aria-labelledby": "passages-heading" },
          el("h2", { id: "passages-heading" }, "Passages searched"),
          el("ol", { class: "passage-list" }, passages.map((p, i) => passageItem(p, i, answers, body.question)))
        )
      );
    }

    const timings = body.timings_ms && typeof body.timings_ms === "object" ? body.timings_ms : {};
    if ("total" in timings) {
      const parts = Object.entries(timings)
        .filter(([key]) => key !== "total")
        .map(([key, value]) => key + " " + formatMs(value));
      results.append(
        el("p", { class: "timings" }, "Took " + formatMs(timings.total) + (parts.length ? " (" + parts.join(", ") + ")" : ""))
      );
    }
    show(results, true);
  }

  function passageItem(p, i, answers, question) {
    const start = p.document_offset ? p.document_offset.start : null;
    const end = p.document_offset ? p.document_offset.end : null;
    // Mark the best answer that lies inside this passage, at its offset relative to the passage.
    let inner = [document.createTextNode(p.text)];
    const found = answers.find(
      (a) => a.document_id === p.document_id && Number.isInteger(start) && a.document_offset.start >= start && a.document_offset.end <= end
    );
    if (found) inner = highlighted(p.text, found.document_offset.start - start, found.document_offset.end - start);

    const scores = ["score " + Number(p.score).toFixed(4)];
    if (p.dense_score !== null && p.dense_score !== undefined) scores.push("similarity " + Number(p.dense_score).toFixed(2));
    if (p.lexical_score !== null && p.lexical_score !== undefined) scores.push("BM25 " + Number(p.lexical_score).toFixed(1));

    const textId = "passage-text-" + i;
    const long = p.text.length > PASSAGE_CLAMP_CHARS;
    const text = el("p", { class: long ? "passage-text clamped" : "passage-text", id: textId }, inner);
    const toggle = long
      ? el(
          "button",
          {
            type: "button",
            class: "link-button",
            "aria-expanded": "false",
            "aria-controls": textId,
            onclick: (event) => {
              const open = text.classList.toggle("clamped") === false;
              event.currentTarget.setAttribute("aria-expanded", String(open));
              event.currentTarget.textContent = open ? "Show less" : "Show whole passage";
            },
          },
          "Show whole passage"
        )
      : null;

    return el(
      "li",
      { class: "passage" },
      el(
        "p",
        { class: "passage-head" },
        el("a", { href: documentHref(p.document_id, start, end) }, p.title || p.document_id),
        el(
          "span",
          { class: "passage-meta" },
          el("span", { class: "doc-id" }, p.document_id),
          pageLabel(p.page),
          " · " + scores.join(" · ")
        )
      ),
      text,
      toggle,
      p.document_offset ? passageFeedback(question, p, text) : null
    );
  }

  $("ask-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("question");
    const question = input.value.trim();
    if (!question) {
      showError($("ask-error"), new ApiProblem(0, "empty", "Please type a question first."));
      input.focus();
      return;
    }
    ask(question);
  });

  // ------------------------------------------------------------------------------------------ filters

  let filterDocumentsLoaded = false;

  /** The /ask body: the question, and the filters when any is chosen. */
  function askBody(question) {
    const filters = chosenFilters();
    return filters ? { question: question, top_k: ASK_TOP_K, filters: filters } : { question: question, top_k: ASK_TOP_K };
  }

  /** The filters chosen on the page as the API's `filters` object, or null when none is chosen. */
  function chosenFilters() {
    const filters = {};
    const ids = Array.from($("filter-docs").selectedOptions, (option) => option.value);
    if (ids.length) filters.document_ids = ids;
    if ($("filter-from").value) filters.published_from = $("filter-from").value; // a date input gives YYYY-MM-DD
    if ($("filter-to").value) filters.published_to = $("filter-to").value;
    return Object.keys(filters).length ? filters : null;
  }

  function showFilterCount() {
    const filters = chosenFilters() || {};
    const n = Object.keys(filters).length;
    $("filters-count").textContent = n ? "(" + plural(n, "filter", "filters") + " on)" : "";
  }

  /** Every indexed document, page by page (GET /documents is paginated), up to DOC_PAGES pages of 1,000. */
  async function allDocuments() {
    const docs = [];
    let cursor = null;
    for (let page = 0; page < DOC_PAGES; page++) {
      const body = await api("/documents?limit=1000" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
      if (Array.isArray(body.documents)) docs.push(...body.documents);
      cursor = body.next_cursor;
      if (!cursor) break;
    }
    return docs;
  }

  /** The document picker, filled from GET /documents the first time the filters are opened. */
  async function loadFilterDocuments() {
    if (filterDocumentsLoaded) return;
    filterDocumentsLoaded = true;
    const picker = $("filter-docs");
    try {
      const name = (d) => String(d.title || d.id);
      const docs = (await allDocuments()).slice().sort((a, b) => name(a).localeCompare(name(b)));
      clear(picker);
      for (const d of docs.slice(0, DOC_LIST_LIMIT)) picker.append(el("option", { value: d.id, title: d.id }, name(d)));
      if (docs.length > DOC_LIST_LIMIT) {
        $("filter-docs-hint").textContent =
          "The first " + numberFormat.format(DOC_LIST_LIMIT) + " of " + numberFormat.format(docs.length) + " documents by title. None chosen: every document.";
      }
    } catch (err) {
      filterDocumentsLoaded = false; // try again the next time the filters are opened
      showError($("ask-error"), err);
    }
  }

  $("ask-filters").addEventListener("toggle", () => {
    if ($("ask-filters").open) loadFilterDocuments();
  });
  for (const id of ["filter-docs", "filter-from", "filter-to"]) $(id).addEventListener("change", showFilterCount);
  $("filters-clear").addEventListener("click", () => {
    for (const option of $("filter-docs").options) option.selected = false;
    $("filter-from").value = "";
    $("filter-to").value = "";
    showFilterCount();
  });

  // ------------------------------------------------------------------------------------------ documents

  let documentsLoaded = null; // the list, once fetched
  let documentsLoading = false;

  async function loadDocuments() {
    if (documentsLoading) return;
    documentsLoading = true;
    const summaryLine = $("docs-summary");
    const errorBox = $("docs-error");
    show(errorBox, false);
    if (!documentsLoaded) summaryLine.textContent = "Loading…";
    try {
      documentsLoaded = await allDocuments();
      const chunks = documentsLoaded.reduce((sum, d) => sum + (Number(d.chunks) || 0), 0);
      summaryLine.textContent = documentsLoaded.length
        ? plural(documentsLoaded.length, "document", "documents") + " · " + plural(chunks, "passage", "passages") + " indexed."
        : "No documents are indexed yet.";
      showFeedbackSummary();
      show($("docs-filter-row"), documentsLoaded.length > 1);
      renderDocuments();
    } catch (err) {
      summaryLine.textContent = "";
      showError(errorBox, err);
    } finally {
      documentsLoading = false;
    }
  }

  /** How many questions users have annotated, and the F1 on them at the last `rag feedback eval`. */
  async function showFeedbackSummary() {
    const line = $("feedback-summary");
    try {
      const s = await api("/feedback/summary");
      if (!s.questions) {
        line.textContent = "";
        return;
      }
      let text = plural(s.questions, "question", "questions") + " annotated by users.";
      const e = s.last_evaluation;
      text += e
        ? " At the last evaluation on them (" + plural(e.questions, "question", "questions") + ", " +
          e.created.slice(0, 10) + "): F1 " + e.f1.toFixed(1) + ", " + e.answered.toFixed(0) + "% answered."
        : " Not evaluated yet (rag feedback eval).";
      line.textContent = text;
    } catch (err) {
      line.textContent = "";
    }
  }

  function renderDocuments() {
    const list = $("docs-list");
    const more = $("docs-more");
    const needle = $("docs-filter").value.trim().toLowerCase();
    const matching = (documentsLoaded || []).filter(
      (d) => !needle || String(d.title).toLowerCase().includes(needle) || String(d.id).toLowerCase().includes(needle)
    );
    clear(list);
    for (const d of matching.slice(0, DOC_LIST_LIMIT)) {
      list.append(
        el(
          "li",
          { class: "doc-item" },
          el("a", { href: documentHref(d.id), class: "doc-link" }, d.title || d.id),
          el(
            "span",
            { class: "doc-item-meta" },
            el("span", { class: "doc-id" }, d.id),
            " · " + plural(Number(d.chars) || 0, "character", "characters") + " · " + plural(Number(d.chunks) || 0, "passage", "passages")
          )
        )
      );
    }
    if (needle && !matching.length) list.append(el("li", { class: "doc-item empty" }, "No document matches that filter."));
    more.textContent =
      matching.length > DOC_LIST_LIMIT
        ? "Showing " + numberFormat.format(DOC_LIST_LIMIT) + " of " + numberFormat.format(matching.length) + "; type in the filter to narrow the list."
        : "";
    show(more, matching.length > DOC_LIST_LIMIT);
  }

  $("docs-filter").addEventListener("input", renderDocuments);

  // ------------------------------------------------------------------------------------------ one document

  let documentRequest = 0;

  async function openDocument(params) {
    const id = params.get("id") || "";
    const start = params.has("start") ? Number(params.get("start")) : null;
    const end = params.has("end") ? Number(params.get("end")) : null;
    const request = ++documentRequest;

    const title = $("doc-title");
    const status = $("doc-status");
    const errorBox = $("doc-error");
    const meta = $("doc-meta");
    const text = $("doc-text");
    show(errorBox, false);
    show(meta, false);
    show(text, false);
    show($("doc-span"), false);
    clear(text);
    title.textContent = "Document";
    document.title = "Document · Ask the articles";
    status.textContent = "Loading the document…";
    title.focus();

    if (!id) {
      status.textContent = "";
      showError(errorBox, new ApiProblem(0, "no_id", "No document was chosen. Pick one from the documents list."));
      return;
    }
    let doc;
    try {
      doc = await api("/documents/" + encodeURIComponent(id));
    } catch (err) {
      if (request !== documentRequest) return;
      status.textContent = "";
      showError(errorBox, err);
      return;
    }
    if (request !== documentRequest) return;

    title.textContent = doc.title || doc.id;
    document.title = (doc.title || doc.id) + " · Ask the articles";
    clear(meta);
    const rows = [
      ["Document id", el("span", { class: "doc-id" }, doc.id)],
      ["Size", plural(Number(doc.chars) || 0, "character", "characters") + ", " + plural(Number(doc.chunks) || 0, "passage", "passages")],
    ];
    if (doc.published) rows.push(["Published", String(doc.published)]);
    if (doc.url) {
      const href = safeUrl(doc.url);
      rows.push(["Source", href ? el("a", { href: href, rel: "noopener noreferrer" }, String(doc.url)) : String(doc.url)]);
    }
    for (const [label, value] of rows) meta.append(el("div", {}, el("dt", {}, label), el("dd", {}, value)));
    show(meta, true);

    const wanted = start !== null || end !== null;
    const parts = wanted ? splitAt(doc.text, start, end) : null;
    if (parts) {
      text.append(document.createTextNode(parts[0]), el("mark", { id: "doc-highlight", tabindex: "-1" }, parts[1]), document.createTextNode(parts[2]));
      $("doc-span-text").textContent =
        "Highlighted: characters " + numberFormat.format(start) + "–" + numberFormat.format(end) + ".";
      show($("doc-jump"), true);
      show($("doc-span"), true);
    } else {
      text.append(document.createTextNode(doc.text));
      if (wanted) {
        $("doc-span-text").textContent =
          "The cited characters (" + params.get("start") + "–" + params.get("end") + ") are not inside this document, so nothing is highlighted.";
        show($("doc-jump"), false);
        show($("doc-span"), true);
      }
    }
    show(text, true);
    status.textContent = parts ? "Document loaded; the cited passage is highlighted." : "Document loaded.";
    if (parts) jumpToHighlight();
  }

  function jumpToHighlight() {
    const mark = $("doc-highlight");
    if (!mark) return;
    mark.scrollIntoView({ block: "center" });
    mark.focus({ preventScroll: true });
  }

  $("doc-jump").addEventListener("click", jumpToHighlight);

  // The skip link moves focus without touching the hash, which belongs to the views.
  document.querySelector(".skip").addEventListener("click", (event) => {
    event.preventDefault();
    $("main").focus();
  });

  $("doc-back").addEventListener("click", (event) => {
    if (inAppNavigations > 0) {
      event.preventDefault();
      history.back();
    }
  });

  // ------------------------------------------------------------------------------------------ start

  // /?q=... asks straight away, so a question can be linked to.
  const initialQuestion = new URLSearchParams(location.search).get("q");
  route(true);
  if (initialQuestion && initialQuestion.trim() && current === "ask") {
    $("question").value = initialQuestion;
    ask(initialQuestion.trim());
  }
})();
