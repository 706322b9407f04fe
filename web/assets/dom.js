// Building the page without innerHTML: every text goes in as text.

/** h('button.primary', {onclick, type: 'button'}, 'Send') */
export function h(tag, attrs, ...children) {
  const [name, ...classes] = tag.split('.');
  const el = document.createElement(name || 'div');
  if (classes.length) el.className = classes.join(' ');
  if (attrs && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key in el && key !== 'list' && key !== 'form') el[key] = value;
    else el.setAttribute(key, value === true ? '' : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** A labelled field: the label wraps its control, so it is always named. */
export function field(label, control, hint) {
  return h('label.field', h('span.label', label), control, hint ? h('small', hint) : null);
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function time(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return h('time', { dateTime: iso, title: d.toLocaleString() }, d.toLocaleString([], {
    month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
  }));
}

export function userName(user) {
  if (!user) return 'someone';
  return `${user.display_name} (@${user.handle})`;
}

/** Reads a form's named controls into an object of trimmed strings. */
export function values(form) {
  const out = {};
  for (const [k, v] of new FormData(form).entries()) out[k] = typeof v === 'string' ? v.trim() : v;
  return out;
}

export function tags(text) {
  return (text || '').split(',').map((t) => t.trim().toLowerCase()).filter(Boolean);
}
