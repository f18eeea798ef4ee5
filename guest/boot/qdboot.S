/*
 * qdboot.S - multiboot2 header and mode switches of qdboot.
 *
 * GRUB (BIOS or UEFI) loads qdboot as a multiboot2 kernel and enters
 * _start in 32-bit protected mode with paging off, %eax = multiboot2 magic
 * and %ebx = the multiboot2 information structure. We identity-map the low
 * 4 GiB with 2 MiB pages, switch to long mode and call qdboot_main()
 * (qdboot.c), which ends in qdboot_jump() into the Linux kernel's 64-bit
 * entry point (Documentation/x86/boot.rst, "64-bit boot protocol").
 */

#define MB2_HEADER_MAGIC 0xe85250d6
#define MB2_ARCH_I386 0
#define MB2_TAG_OPTIONAL 1

#define CR0_PE 0x00000001
#define CR0_PG 0x80000000
#define CR4_PAE 0x00000020
#define MSR_EFER 0xc0000080
#define EFER_LME 0x00000100

#define BOOT_CS 0x10 /* the selectors the 64-bit boot protocol asks for */
#define BOOT_DS 0x18

    .section .multiboot, "a"
    .balign 8
mb2_header:
    .long MB2_HEADER_MAGIC
    .long MB2_ARCH_I386
    .long mb2_header_end - mb2_header
    .long -(MB2_HEADER_MAGIC + MB2_ARCH_I386 + (mb2_header_end - mb2_header))

    /* Information request: everything optional, GRUB gives most anyway. */
    .balign 8
mb2_info_request:
    .short 1, MB2_TAG_OPTIONAL
    .long mb2_info_request_end - mb2_info_request
    .long 1     /* command line */
    .long 3     /* modules */
    .long 6     /* memory map */
    .long 8     /* framebuffer */
    .long 14    /* ACPI 1.0 RSDP */
    .long 15    /* ACPI 2.0 RSDP */
mb2_info_request_end:

    /*
     * Framebuffer, optional, no preferred size: with it GRUB passes the
     * UEFI GOP framebuffer (efifb) on; grub.cfg sets gfxpayload=text on BIOS.
     */
    .balign 8
    .short 5, MB2_TAG_OPTIONAL
    .long 20
    .long 0, 0, 32

    /* Page-aligned modules. */
    .balign 8
    .short 6, 0
    .long 8

    /* End. */
    .balign 8
    .short 0, 0
    .long 8
mb2_header_end:

    .section .text.entry, "ax"
    .code32
    .globl _start
_start:
    cli
    cld
    mov     %eax, %edi              /* keep magic and info out of .bss */
    mov     %ebx, %esi

    /* Zero .bss (the stack and page tables live there). */
    push    %edi
    mov     $__bss_start, %edi
    mov     $__bss_end, %ecx
    sub     %edi, %ecx
    shr     $2, %ecx
    xor     %eax, %eax
    rep stosl
    pop     %edi

    mov     $qdboot_stack_top, %esp

    /* PML4[0] -> PDPT; PDPT[0..3] -> PD0..PD3; PDn: 2 MiB identity pages. */
    mov     $qdboot_pdpt, %eax
    or      $0x3, %eax
    mov     %eax, qdboot_pml4
    xor     %ecx, %ecx
1:  mov     %ecx, %eax
    shl     $12, %eax
    add     $qdboot_pd, %eax
    or      $0x3, %eax
    mov     %eax, qdboot_pdpt(, %ecx, 8)
    inc     %ecx
    cmp     $4, %ecx
    jb      1b
    xor     %ecx, %ecx
2:  mov     %ecx, %eax
    shl     $21, %eax
    or      $0x83, %eax             /* present, writable, 2 MiB */
    mov     %eax, qdboot_pd(, %ecx, 8)
    mov     %ecx, %eax
    shr     $11, %eax               /* bits 32.. of the address */
    mov     %eax, qdboot_pd + 4(, %ecx, 8)
    inc     %ecx
    cmp     $2048, %ecx
    jb      2b

    mov     %cr4, %eax
    or      $CR4_PAE, %eax
    mov     %eax, %cr4
    mov     $qdboot_pml4, %eax
    mov     %eax, %cr3
    mov     $MSR_EFER, %ecx
    rdmsr
    or      $EFER_LME, %eax
    wrmsr
    mov     %cr0, %eax
    or      $(CR0_PG | CR0_PE), %eax
    mov     %eax, %cr0

    lgdt    qdboot_gdt_desc
    ljmp    $BOOT_CS, $long_mode

    .code64
long_mode:
    mov     $BOOT_DS, %eax
    mov     %eax, %ds
    mov     %eax, %es
    mov     %eax, %ss
    mov     %eax, %fs
    mov     %eax, %gs
    mov     $qdboot_stack_top, %esp
    /* qdboot_main(magic = %edi, info = %esi); it does not return. */
    call    qdboot_main
3:  hlt
    jmp     3b

/*
 * void qdboot_jump(uint64_t entry, void *boot_params)
 * Enters the kernel with %rsi = boot_params, as the protocol requires.
 */
    .globl qdboot_jump
qdboot_jump:
    cli
    xor     %ebp, %ebp
    jmp     *%rdi

    .section .rodata
    .balign 8
qdboot_gdt:
    .quad   0
    .quad   0
    .quad   0x00af9a000000ffff      /* BOOT_CS: 64-bit code */
    .quad   0x00cf92000000ffff      /* BOOT_DS: data */
qdboot_gdt_end:
qdboot_gdt_desc:
    .short  qdboot_gdt_end - qdboot_gdt - 1
    .long   qdboot_gdt

    .section .bss
    .balign 4096
qdboot_pml4:
    .skip   4096
qdboot_pdpt:
    .skip   4096
qdboot_pd:
    .skip   4 * 4096
qdboot_stack:
    .skip   16384
qdboot_stack_top:

    .section .note.GNU-stack, "", @progbits
