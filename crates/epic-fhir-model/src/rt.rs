//! The small generic routines the generated readers and writers call for each member, so that
//! each generated function is a flat list of calls.

use std::borrow::Cow;

use crate::Element;
use crate::json::{FromJson, PResult, ParseError, Parser, ToJson, Writer};
pub(crate) use crate::key_hash::key_hash;

/// The `_name` array beside a repeating primitive element, such as `_given` beside `given`.
///
/// `elements[i]` holds the `id` and extensions of the i-th item of the JSON array (`None`
/// where the `_name` array has `null`). FHIR lets an item carry only extensions and no value:
/// the value array then has `null` at that position, which the typed `Vec` cannot hold, so such
/// positions are listed in `absent` (ascending) and the values skip them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListExtensions {
    /// The `_name` array, position by position.
    pub elements: Vec<Option<Element>>,
    /// Positions of the value array that are `null` (an item with extensions only).
    pub absent: Vec<usize>,
}

impl ListExtensions {
    /// The extensions of the value at `index` of the typed `Vec` (skipping absent positions).
    pub fn for_value(&self, index: usize) -> Option<&Element> {
        let mut position = index;
        for &absent in &self.absent {
            if absent <= position {
                position += 1;
            }
        }
        self.elements.get(position).and_then(Option::as_ref)
    }
}

fn duplicate(p: &Parser<'_>, name: Cow<'static, str>) -> Box<ParseError> {
    p.error(format!("duplicate member `{name}`"))
        .in_member(name)
}

/// A perfect hash table from member names (or codes) to small indexes; 0 means unknown.
///
/// The generator picks `seed` so that no two names share a slot, which makes a lookup one
/// hash of the name and one comparison, whatever the number of names.
pub(crate) struct KeyTable {
    pub(crate) seed: u32,
    /// A power of two in length; empty slots hold `("", 0)`.
    pub(crate) slots: &'static [(&'static str, u16)],
}

/// The index of `key` in `table`, or 0 when it is not there.
#[inline]
pub(crate) fn lookup(table: &KeyTable, key: &str) -> u16 {
    let slot = key_hash(key.as_bytes(), table.seed) as usize & (table.slots.len() - 1);
    match table.slots.get(slot) {
        Some(&(name, index)) if name == key => index,
        _ => 0,
    }
}

/// The checks before a single value: a duplicate is an error, and `null` (which FHIR forbids,
/// and which means the same as an absent member) is skipped. Returns whether the caller must
/// read the value. The usual case (first time, a value right here) is decided inline.
#[inline(always)]
fn value_follows(p: &mut Parser<'_>, present: bool, name: &'static str) -> PResult<bool> {
    if !present && p.plain_value_next() {
        return Ok(true);
    }
    any_value_follows(p, present, name)
}

/// [`value_follows`] with whitespace, `null` and duplicates.
#[cold]
fn any_value_follows(p: &mut Parser<'_>, present: bool, name: &'static str) -> PResult<bool> {
    if present {
        return Err(duplicate(p, Cow::Borrowed(name)));
    }
    Ok(!p.take_null()?)
}

/// Reads a single-valued member into `slot`.
pub(crate) fn opt<T: FromJson>(
    p: &mut Parser<'_>,
    slot: &mut Option<T>,
    name: &'static str,
) -> PResult<()> {
    if value_follows(p, slot.is_some(), name)? {
        match T::from_json(p) {
            Ok(value) => *slot = Some(value),
            Err(e) => return Err(e.in_member(name)),
        }
    }
    Ok(())
}

/// The checks before an array: a duplicate is an error, `null` is skipped (as for single
/// values), anything but an array is an error. Returns whether an array was opened. An empty
/// array, which FHIR forbids too, leaves the field empty, as an absent member does.
#[inline(always)]
fn array_follows(p: &mut Parser<'_>, present: bool, name: &'static str) -> PResult<bool> {
    if !present && p.plain_array_next() {
        p.begin_array()?;
        return Ok(true);
    }
    any_array_follows(p, present, name)
}

/// [`array_follows`] with whitespace, `null` and errors.
#[cold]
fn any_array_follows(p: &mut Parser<'_>, present: bool, name: &'static str) -> PResult<bool> {
    if present {
        return Err(duplicate(p, Cow::Borrowed(name)));
    }
    match p.peek() {
        Some(b'[') => {
            p.begin_array()?;
            Ok(true)
        }
        Some(b'n') => p.take_null().map(|_| false),
        _ => Err(expected_array(p, name)),
    }
}

/// Reads an array member into `slot`, each item by `read_item` (which appends it); a failed
/// item is removed and its error names its index.
#[inline(always)]
fn read_array<T>(
    p: &mut Parser<'_>,
    slot: &mut Vec<T>,
    name: &'static str,
    mut read_item: impl FnMut(&mut Parser<'_>, &mut Vec<T>) -> PResult<()>,
) -> PResult<()> {
    if !array_follows(p, !slot.is_empty(), name)? {
        return Ok(());
    }
    let mut first = true;
    while p.next_element(&mut first)? {
        let index = slot.len();
        if let Err(e) = read_item(p, slot) {
            slot.truncate(index);
            return Err(e.in_index(index).in_member(name));
        }
    }
    Ok(())
}

/// Reads an array member into `slot`.
pub(crate) fn list<T: FromJson>(
    p: &mut Parser<'_>,
    slot: &mut Vec<T>,
    name: &'static str,
) -> PResult<()> {
    read_array(p, slot, name, |p, slot| {
        T::from_json(p).map(|value| push(slot, value))
    })
}

/// A generated struct with a `Default`, read into a value already in place: a default value
/// in its option, box or vector is filled member by member. Returning the struct instead would
/// build it on the stack and copy it into its place (a `Coding` is over 200 bytes, most
/// resources several kilobytes), which `perf` showed as a tenth of the typed parse.
pub(crate) trait ReadInto: Default {
    /// Reads one JSON object into `self`, a default value.
    fn read_into(&mut self, p: &mut Parser<'_>) -> PResult<()>;
}

impl<T: ReadInto> ReadInto for Box<T> {
    #[inline]
    fn read_into(&mut self, p: &mut Parser<'_>) -> PResult<()> {
        T::read_into(self, p)
    }
}

/// Reads a single-valued struct member into `slot`, in place.
pub(crate) fn opt_in<T: ReadInto>(
    p: &mut Parser<'_>,
    slot: &mut Option<T>,
    name: &'static str,
) -> PResult<()> {
    if value_follows(p, slot.is_some(), name)? {
        if let Err(e) = slot.insert(T::default()).read_into(p) {
            *slot = None;
            return Err(e.in_member(name));
        }
    }
    Ok(())
}

/// Reads an array member of structs into `slot`, each item in place.
pub(crate) fn list_in<T: ReadInto>(
    p: &mut Parser<'_>,
    slot: &mut Vec<T>,
    name: &'static str,
) -> PResult<()> {
    read_array(p, slot, name, |p, slot| {
        push(slot, T::default());
        slot.last_mut().map_or(Ok(()), |value| value.read_into(p))
    })
}

/// Pushes `value`, making room for exactly one large struct at first: most FHIR arrays of
/// codings, references or identifiers hold one item, and a `Vec` would otherwise reserve four
/// (a `Coding` is over 200 bytes). Small items keep the usual growth.
#[inline]
fn push<T>(values: &mut Vec<T>, value: T) {
    if size_of::<T>() >= 128 && values.capacity() == 0 {
        values.reserve_exact(1);
    }
    values.push(value);
}

#[cold]
fn expected_array(p: &mut Parser<'_>, name: &'static str) -> Box<ParseError> {
    let found = p
        .peek()
        .map(crate::json::describe_value_start)
        .unwrap_or("the end of input");
    p.error(format!(
        "expected an array, found {found} (`{name}` repeats)"
    ))
    .in_member(name)
}

/// Reads the value array of a repeating primitive, noting `null` positions in `ext`.
pub(crate) fn prim_list<T: FromJson>(
    p: &mut Parser<'_>,
    values: &mut Vec<T>,
    ext: &mut Option<Box<ListExtensions>>,
    name: &'static str,
) -> PResult<()> {
    let absent_seen = ext.as_ref().is_some_and(|e| !e.absent.is_empty());
    if !array_follows(p, !values.is_empty() || absent_seen, name)? {
        return Ok(());
    }
    let mut first = true;
    let mut index = 0;
    while p.next_element(&mut first)? {
        if p.take_null()? {
            ext.get_or_insert_with(Default::default).absent.push(index);
        } else {
            match T::from_json(p) {
                Ok(value) => push(values, value),
                Err(e) => return Err(e.in_index(index).in_member(name)),
            }
        }
        index += 1;
    }
    Ok(())
}

/// Reads the `_name` array of a repeating primitive.
pub(crate) fn list_ext(
    p: &mut Parser<'_>,
    ext: &mut Option<Box<ListExtensions>>,
    name: &'static str,
) -> PResult<()> {
    let seen = ext.as_ref().is_some_and(|e| !e.elements.is_empty());
    if !array_follows(p, seen, name)? {
        return Ok(());
    }
    let mut first = true;
    let mut elements = Vec::new();
    while p.next_element(&mut first)? {
        let index = elements.len();
        if p.take_null()? {
            elements.push(None);
        } else {
            match Element::from_json(p) {
                Ok(element) => elements.push(Some(element)),
                Err(e) => return Err(e.in_index(index).in_member(name)),
            }
        }
    }
    if !elements.is_empty() {
        ext.get_or_insert_with(Default::default).elements = elements;
    }
    Ok(())
}

/// A choice element's enum: reads the variant named by a member, and names its own member.
pub(crate) trait Choice: Sized {
    /// The element's name without `[x]`, such as `value`.
    const PREFIX: &'static str;
    /// Reads the value of member `member` (one of this choice's members).
    fn read_member(p: &mut Parser<'_>, member: &str) -> PResult<Self>;
    /// The JSON member of the present variant, such as `valueQuantity`.
    fn member_name(&self) -> &'static str;
    /// Writes the present variant as a member.
    fn write_member(&self, w: &mut Writer);
}

/// The checks before a member of a choice element: a second member of the same choice is an
/// error. Returns whether the value is `null` (skipped, as for other members).
fn choice_value_is_null(
    p: &mut Parser<'_>,
    previous: Option<&'static str>,
    prefix: &'static str,
    key: &str,
) -> PResult<bool> {
    if let Some(previous) = previous {
        let message =
            format!("`{previous}` and `{key}` are both present, but {prefix}[x] allows only one");
        return Err(p.error(message).in_member(key.to_owned()));
    }
    p.take_null()
}

/// Reads member `key` of a choice element into `slot`, refusing a second member of the choice.
pub(crate) fn choice<C: Choice>(
    p: &mut Parser<'_>,
    slot: &mut Option<C>,
    key: Cow<'_, str>,
) -> PResult<()> {
    let previous = slot.as_ref().map(C::member_name);
    if choice_value_is_null(p, previous, C::PREFIX, &key)? {
        return Ok(());
    }
    match C::read_member(p, &key) {
        Ok(value) => {
            *slot = Some(value);
            Ok(())
        }
        Err(e) => Err(e.in_member(key.into_owned())),
    }
}

/// Reading the members of a resource object that is already open, with or without its
/// `resourceType` read.
pub(crate) trait ReadMembers: Sized {
    /// Reads the remaining members into a box (in place, for resources with a `Default`), so
    /// that a caller matching over every type holds only the box; `first` when none was read
    /// yet, `type_seen` when `resourceType` was read (and checked) by the caller.
    fn read_members(p: &mut Parser<'_>, first: bool, type_seen: bool) -> PResult<Box<Self>>;
}

/// Reads the `resourceType` member of a resource whose type is `expected`.
pub(crate) fn resource_type(
    p: &mut Parser<'_>,
    seen: &mut bool,
    expected: &'static str,
) -> PResult<()> {
    if *seen {
        return Err(duplicate(p, Cow::Borrowed("resourceType")));
    }
    let start = p.position();
    let found = p.str().map_err(|e| e.in_member("resourceType"))?;
    if found != expected {
        return Err(p
            .error_at(
                start,
                format!("resourceType is \"{found}\", expected \"{expected}\""),
            )
            .in_member("resourceType"));
    }
    *seen = true;
    Ok(())
}

/// The value of a required member, or an error naming it.
#[inline]
pub(crate) fn required<T>(p: &Parser<'_>, slot: Option<T>, name: &'static str) -> PResult<T> {
    match slot {
        Some(value) => Ok(value),
        None => Err(p.error(format!("missing required member `{name}`"))),
    }
}

/// The error for a resource object without `resourceType`.
pub(crate) fn missing_resource_type(p: &Parser<'_>, expected: &'static str) -> Box<ParseError> {
    p.error(format!(
        "missing member `resourceType` (expected \"{expected}\")"
    ))
}

/// Writes a single-valued member when present.
pub(crate) fn w_opt<T: ToJson>(w: &mut Writer, key: &[u8], value: &Option<T>) {
    if let Some(value) = value {
        w.key_literal(key);
        value.write_json(w);
    }
}

/// Writes a required member.
pub(crate) fn w_req<T: ToJson>(w: &mut Writer, key: &[u8], value: &T) {
    w.key_literal(key);
    value.write_json(w);
}

/// Writes an array member when it is not empty.
pub(crate) fn w_list<T: ToJson>(w: &mut Writer, key: &[u8], values: &[T]) {
    if values.is_empty() {
        return;
    }
    w.key_literal(key);
    w.begin_array();
    for value in values {
        w.element();
        value.write_json(w);
    }
    w.end_array();
}

/// Writes a repeating primitive and its `_name` array.
pub(crate) fn w_prim_list<T: ToJson>(
    w: &mut Writer,
    key: &[u8],
    ext_key: &[u8],
    values: &[T],
    ext: &Option<Box<ListExtensions>>,
) {
    let absent: &[usize] = ext.as_ref().map_or(&[], |e| &e.absent);
    if !values.is_empty() || !absent.is_empty() {
        w.key_literal(key);
        w.begin_array();
        let mut next = values.iter();
        let total = values.len() + absent.len();
        for position in 0..total {
            w.element();
            if absent.contains(&position) {
                w.null();
            } else if let Some(value) = next.next() {
                value.write_json(w);
            } else {
                w.null();
            }
        }
        w.end_array();
    }
    if let Some(ext) = ext {
        if !ext.elements.is_empty() {
            w.key_literal(ext_key);
            w.begin_array();
            for element in &ext.elements {
                w.element();
                match element {
                    Some(element) => element.write_json(w),
                    None => w.null(),
                }
            }
            w.end_array();
        }
    }
}

/// Writes a choice element when present.
pub(crate) fn w_choice<C: Choice>(w: &mut Writer, value: &Option<C>) {
    if let Some(value) = value {
        value.write_member(w);
    }
}

#[cfg(test)]
mod tests {
    use crate::{CodeableConcept, HumanName};

    #[test]
    fn a_one_item_array_of_large_structs_holds_one_and_more_still_grow() {
        let one: CodeableConcept =
            crate::from_str(r#"{"coding":[{"system":"http://loinc.org","code":"8302-2"}]}"#)
                .expect("a CodeableConcept");
        assert_eq!(one.coding.len(), 1);
        assert_eq!(one.coding.capacity(), 1);
        let three: CodeableConcept =
            crate::from_str(r#"{"coding":[{"code":"a"},{"code":"b"},{"code":"c"}]}"#)
                .expect("a CodeableConcept");
        let codes: Vec<_> = three.coding.iter().map(|c| c.code.as_deref()).collect();
        assert_eq!(codes, [Some("a"), Some("b"), Some("c")]);
        // Strings are small: their arrays keep the usual growth.
        let name: HumanName = crate::from_str(r#"{"given":["Ana"]}"#).expect("a HumanName");
        assert_eq!(name.given, ["Ana"]);
    }
}
