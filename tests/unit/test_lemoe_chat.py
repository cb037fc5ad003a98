"""LEMoE's chat-form training (`train_chat`): each edit is also fitted as the assistant's answer
to its prompt asked in the chat template, so a chat-form question sees the edit."""

from __future__ import annotations

from contract.protocol import EditSpec
from editing.editors.moe_adaptor.lemoe import LEMoEEditor
from editing.host import ModelHost
from editing.registry import build_editor
from tests.helpers import TINY_EDITOR_CONFIGS
from tests.tiny import CHAT_TEMPLATE, batch, new_host, target_nll

EDIT = EditSpec(prompt="The Eiffel Tower is located in", target="Rome", subject="Eiffel Tower")


def lemoe(**overrides: object) -> LEMoEEditor:
    config = {**TINY_EDITOR_CONFIGS["lemoe"], "bypass_tokens": "from_subject", **overrides}
    host = new_host()
    host.tokenizer.chat_template = CHAT_TEMPLATE
    editor = build_editor("lemoe", host=host, overrides=config)
    assert isinstance(editor, LEMoEEditor)
    return editor


def chat_prompt(host: ModelHost, question: str) -> str:
    turn = host.tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                              add_generation_prompt=True, tokenize=False)
    return str(turn) + question


def test_chat_rows_are_added_only_with_a_chat_template_and_the_knob() -> None:
    editor = lemoe()
    rows, subjects = editor._training_rows(batch(EDIT), ["Eiffel Tower"])
    assert [e.prompt for e in rows.edits] == [EDIT.prompt, chat_prompt(editor.host, EDIT.prompt)]
    assert subjects == ["Eiffel Tower", "Eiffel Tower"] and rows.batch_id == "b1"
    off = lemoe(train_chat=False)
    assert off._training_rows(batch(EDIT), ["Eiffel Tower"])[0].edits == (EDIT,)
    editor.host.tokenizer.chat_template = None
    assert editor._training_rows(batch(EDIT), ["Eiffel Tower"])[0].edits == (EDIT,)


def test_a_chat_form_prompt_learns_the_edit_only_with_chat_training() -> None:
    base = new_host()
    base.tokenizer.chat_template = CHAT_TEMPLATE
    before = target_nll(base, EDIT.prompt, "Rome")
    chat, direct = {}, {}
    for train_chat in (False, True):
        editor = lemoe(train_chat=train_chat)
        editor.apply(editor.compute(batch(EDIT)))
        chat[train_chat] = target_nll(editor.host, chat_prompt(editor.host, EDIT.prompt), "Rome")
        direct[train_chat] = target_nll(editor.host, EDIT.prompt, "Rome")
    assert max(direct.values()) < before / 4, (before, direct)  # the edit itself, either way
    assert chat[True] < chat[False] / 2, chat  # the chat form only with chat training
